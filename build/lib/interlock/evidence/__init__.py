"""Evidence connectors: confirm a recommender's evidence at its source (health checks,
Alertmanager, Prometheus, change records) instead of trusting the recommender. The recommender
cites a check the policy defines; the policy says what it means."""

from interlock.evidence.confirmation import Confirmation, Normalise, RecentChanges
from interlock.evidence.connectors import (
    LAB_MONITOR,
    check_items,
    cited_check,
    confirm,
    resolve_base_url,
)
from interlock.evidence.credentials import CredentialError, client_for, redact, tls_settings
from interlock.evidence.refs import KINDS, ChangeClaim, RefError, parse_change

__all__ = [
    "KINDS",
    "LAB_MONITOR",
    "ChangeClaim",
    "Confirmation",
    "CredentialError",
    "Normalise",
    "RecentChanges",
    "RefError",
    "check_items",
    "cited_check",
    "client_for",
    "confirm",
    "parse_change",
    "redact",
    "resolve_base_url",
    "tls_settings",
]

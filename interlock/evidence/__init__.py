"""Evidence connectors: confirm a recommender's evidence at its source (health checks,
Alertmanager, Prometheus, change records) instead of trusting the recommender."""

from interlock.evidence.confirmation import Confirmation, Normalise, RecentChanges
from interlock.evidence.connectors import LAB_MONITOR, check_items, confirm, resolve_base_url
from interlock.evidence.refs import (
    GRAMMAR,
    KINDS,
    AlertClaim,
    ChangeClaim,
    Claim,
    HealthClaim,
    QueryClaim,
    RefError,
    parse_ref,
)

__all__ = [
    "GRAMMAR",
    "KINDS",
    "LAB_MONITOR",
    "AlertClaim",
    "ChangeClaim",
    "Claim",
    "Confirmation",
    "HealthClaim",
    "Normalise",
    "QueryClaim",
    "RecentChanges",
    "RefError",
    "check_items",
    "confirm",
    "parse_ref",
    "resolve_base_url",
]

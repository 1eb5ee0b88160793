"""What confirming one evidence item yields, and what every source connector is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from interlock.evidence._fetch import Endpoint
from interlock.sources import SERVICE_PLACEHOLDER

Normalise = Callable[[str], str | None]
ChangeRecords = list[dict[str, Any]]
# Sync or async. Each record: {"release": str, "status": "completed" | ...,
# "finished_at": aware datetime or RFC 3339 text}; other keys are kept in `observed`.
RecentChanges = Callable[[str], ChangeRecords | Awaitable[ChangeRecords]]


class Confirmation(BaseModel):
    """What a source said about one evidence item, and whether that supports the claim.

    `fetched` is whether the source answered at all; `supports` is never true without it.
    """

    model_config = ConfigDict(frozen=True)

    fetched: bool
    supports: bool
    observed: dict[str, Any] = Field(default_factory=dict)
    reason: str
    source_time: datetime | None = None
    attempts: int = 0
    # Alertmanager: the alert is there but silenced or inhibited (by these silence ids and
    # inhibiting alerts); such an answer neither confirms nor clears anything.
    suppressed: bool = False
    suppressed_by: list[str] = Field(default_factory=list)


def refused(reason: str, **kw: Any) -> Confirmation:
    """An item nothing was (or could be) learned about: neither fetched nor supported."""
    return Confirmation(fetched=False, supports=False, reason=reason, **kw)


@dataclass(frozen=True)
class SourceCheck:
    """Everything a connector needs to ask one source about one check."""

    source: str
    check: str
    endpoint: Endpoint
    target: str  # canonical
    normalise: Normalise
    max_age: timedelta
    now: datetime
    recent_changes: RecentChanges | None
    retries: int
    backoff: float
    # After a change: a suppressed alert is then looked up at its Prometheus rule.
    after_change: bool = False
    rules: Endpoint | None = None

    def canonical(self, name: Any) -> str | None:
        """The catalog's name for a label value from a source; None if it names nothing."""
        return self.normalise(name) if isinstance(name, str) and name.strip() else None

    def service_of(self, labels: Any) -> str | None:
        """The canonical service a series or alert is about, by the source's service label."""
        return self.canonical(labels.get(self.endpoint.service_label)) if isinstance(labels, dict) else None

    def render(self, template: str, *, quote: bool) -> str:
        """`template` with $service replaced by the target (escaped for a PromQL string)."""
        value = self.target
        if quote:
            value = value.replace("\\", "\\\\").replace('"', '\\"')
        return template.replace(SERVICE_PLACEHOLDER, value)

    def not_about_target(self, named: str) -> str | None:
        """Why a ref that names `named` cannot be evidence for the target, or None if it can."""
        canonical = self.canonical(named)
        if canonical is None:
            return f"the ref names {named!r}, which is not a catalogued service"
        if canonical != self.target:
            return f"the ref is about {canonical}, not the target {self.target}"
        return None

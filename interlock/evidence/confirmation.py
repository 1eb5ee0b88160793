"""What confirming one evidence item yields, and what every source connector is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

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


def refused(reason: str, **kw: Any) -> Confirmation:
    """An item nothing was (or could be) learned about: neither fetched nor supported."""
    return Confirmation(fetched=False, supports=False, reason=reason, **kw)


@dataclass(frozen=True)
class SourceCheck:
    """Everything a connector needs to ask one source about one claim."""

    base_url: str
    target: str  # canonical
    normalise: Normalise
    http: httpx.AsyncClient
    max_age: timedelta
    now: datetime
    recent_changes: RecentChanges | None
    retries: int
    backoff: float

    def canonical(self, name: Any) -> str | None:
        """The catalog's name for a label value from a source; None if it names nothing."""
        return self.normalise(name) if isinstance(name, str) and name.strip() else None

    def not_about_target(self, named: str) -> str | None:
        """Why a ref that names `named` cannot be evidence for the target, or None if it can."""
        canonical = self.canonical(named)
        if canonical is None:
            return f"the ref names {named!r}, which is not a catalogued service"
        if canonical != self.target:
            return f"the ref is about {canonical}, not the target {self.target}"
        return None

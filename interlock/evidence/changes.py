"""The changes connector: did Interlock's own records see that release deployed recently?"""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta

from interlock.evidence import _fetch
from interlock.evidence._fetch import Retryable, clock, parse_time, trim
from interlock.evidence.confirmation import (
    ChangeRecords,
    Confirmation,
    SourceCheck,
    refused,
)
from interlock.evidence.refs import ChangeClaim

# A record stamped a little in the future is clock skew between hosts, not a forgery.
CLOCK_SKEW = timedelta(minutes=5)


async def confirm_change(claim: ChangeClaim, check: SourceCheck) -> Confirmation:
    """Supported iff a record of the release has status 'completed' and finished within
    `max_age` of now."""
    if refusal := check.not_about_target(claim.service):
        return refused(refusal)
    target, release = check.target, claim.release
    source = check.recent_changes
    if source is None:
        return refused("no change records are wired to this source")

    async def attempt() -> ChangeRecords:
        try:
            answer = source(target)
            records = await answer if inspect.isawaitable(answer) else answer
        except Exception as err:
            raise Retryable(f"{type(err).__name__}: {err}") from err
        return list(records)

    records, attempts = await _fetch.with_retries(
        f"change records of {target}", attempt, retries=check.retries, backoff=check.backoff
    )
    matching = [r for r in records if isinstance(r, dict) and r.get("release") == release]
    observed = {"service": target, "release": release, "changes": trim(matching)}

    def answer(supports: bool, reason: str, at: datetime | None = None) -> Confirmation:
        return Confirmation(
            fetched=True,
            supports=supports,
            reason=reason,
            observed=observed,
            source_time=at,
            attempts=attempts,
        )

    finished = [
        t
        for r in matching
        if str(r.get("status", "")).lower() == "completed"
        and (t := parse_time(r.get("finished_at"))) is not None
    ]
    recent = [t for t in finished if check.now - check.max_age <= t <= check.now + CLOCK_SKEW]
    if recent:
        at = max(recent)
        return answer(True, f"release {release} was deployed to {target} at {clock(at, check.now)}", at)
    if finished:
        at = max(finished)
        return answer(
            False,
            f"release {release} was last deployed to {target} at {clock(at, check.now)}, "
            f"not within {_duration(check.max_age)}",
            at,
        )
    if any(str(r.get("status", "")).lower() == "completed" for r in matching):
        return answer(False, f"the deploy of release {release} to {target} has no finish time")
    if matching:
        statuses = ", ".join(sorted({str(r.get("status")) for r in matching}))
        return answer(False, f"no completed deploy of release {release} to {target} (status: {statuses})")
    return answer(False, f"no deploy of release {release} to {target} on record")


def _duration(limit: timedelta) -> str:
    seconds = int(limit.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

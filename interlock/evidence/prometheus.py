"""The Prometheus connector (HTTP API v1): is the target's sample on the claimed side now?"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from interlock.evidence import _fetch
from interlock.evidence._fetch import trim
from interlock.evidence.confirmation import Confirmation, SourceCheck
from interlock.evidence.refs import QueryClaim

Sample = tuple[dict[str, Any], float, datetime]


async def confirm_query(claim: QueryClaim, check: SourceCheck) -> Confirmation:
    """Supported iff a series whose `service` label names the target has a value that
    satisfies the claimed comparison; series for other services do not count."""
    target = check.target
    url = f"{check.base_url}/api/v1/query"
    # No `time` parameter: the source evaluates at its own now, so the answer is current.
    response, attempts = await _fetch.get(
        check.http,
        url,
        params=[("query", claim.query)],
        retries=check.retries,
        backoff=check.backoff,
        retry_server_errors=True,
    )
    body = _fetch.json_body(response)
    info = body if isinstance(body, dict) else {}
    observed: dict[str, Any] = {"url": url, "query": claim.query}

    def answer(supports: bool, reason: str, at: datetime | None = None) -> Confirmation:
        return Confirmation(
            fetched=True,
            supports=supports,
            reason=reason,
            observed=observed,
            source_time=at or _fetch.response_time(response),
            attempts=attempts,
        )

    if response.status_code != 200 or info.get("status") != "success":
        observed["answer"] = trim(body)
        error = info.get("error") or f"HTTP {response.status_code}"
        return answer(False, f"prometheus refused the query {claim.query!r}: {error}")
    data = info["data"] if isinstance(info.get("data"), dict) else {}
    if data.get("resultType") != "vector":
        return answer(
            False, f"the query must return an instant vector, not {data.get('resultType')!r}"
        )

    samples = [s for raw in data.get("result") or [] if (s := _sample(raw)) is not None]
    mine = [s for s in samples if check.canonical(s[0].get("service")) == target]
    # The target's series first, so trimming never drops the ones the decision rests on.
    shown = mine + [s for s in samples if s not in mine]
    observed["samples"] = trim([{"metric": labels, "value": value} for labels, value, _ in shown])
    claimed = f"{claim.op} {claim.threshold:g}"
    if not mine:
        others = sorted({str(s[0].get("service", "<no service label>")) for s in samples})
        elsewhere = f" (series for {', '.join(others)})" if others else ""
        return answer(False, f"{claim.query} returned no series for {target}{elsewhere}")
    holding = [s for s in mine if claim.holds(s[1])]
    if holding:
        _, value, at = holding[0]
        return answer(True, f"{claim.query} is {value:g} for {target}, {claimed} as claimed", at)
    values = ", ".join(f"{v:g}" for _, v, _ in mine)
    return answer(False, f"{claim.query} is {values} for {target}, not {claimed}", mine[0][2])


def _sample(raw: Any) -> Sample | None:
    """(labels, value, timestamp) of one instant-vector sample, or None if malformed."""
    try:
        labels = raw["metric"]
        ts, text = raw["value"]
        return dict(labels), float(text), datetime.fromtimestamp(float(ts), UTC)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None

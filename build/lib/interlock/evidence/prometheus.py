"""The Prometheus connector (HTTP API v1): is the target's value on the check's side of its
threshold now? Also: is an alert rule still firing for the target (behind a silence)?"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from interlock.evidence import _fetch
from interlock.evidence._fetch import Endpoint, trim
from interlock.evidence.confirmation import Confirmation, SourceCheck
from interlock.sources import PrometheusCheck

Sample = tuple[dict[str, Any], float, datetime]


async def confirm_query(spec: PrometheusCheck, check: SourceCheck) -> Confirmation:
    """Supported iff a series whose service label names the target satisfies the check's
    comparison; series for other services do not count."""
    target = check.target
    query = check.render(spec.query, quote=True)
    claimed = spec.comparison
    # No `time` parameter: the source evaluates at its own now, so the answer is current.
    response, attempts, url = await _fetch.get(
        check.endpoint,
        "/api/v1/query",
        params=[("query", query)],
        retries=check.retries,
        backoff=check.backoff,
        retry_server_errors=True,
    )
    body = _fetch.json_body(response)
    info = body if isinstance(body, dict) else {}
    observed: dict[str, Any] = {"url": url, "query": query, "comparison": claimed}

    def answer(supports: bool, reason: str, at: datetime | None = None, fetched: bool = True) -> Confirmation:
        return Confirmation(
            fetched=fetched,
            supports=supports,
            reason=reason,
            observed=observed,
            source_time=at or _fetch.response_time(response),
            attempts=attempts,
        )

    if response.status_code != 200 or info.get("status") != "success":
        observed["answer"] = trim(body)
        error = _fetch.error_text(response) or f"HTTP {response.status_code}"
        # Not fetched: a refusal (401, 403, a bad query) says nothing about the target, so
        # after a change it must never read as "cleared".
        return answer(
            False,
            f"prometheus refused the query {query!r} (HTTP {response.status_code}): {error}",
            fetched=False,
        )
    data = info["data"] if isinstance(info.get("data"), dict) else {}
    if data.get("resultType") != "vector":
        return answer(
            False,
            f"the query must return an instant vector, not {data.get('resultType')!r}",
            fetched=False,
        )

    samples = [s for raw in data.get("result") or [] if (s := _sample(raw)) is not None]
    mine = [s for s in samples if check.service_of(s[0]) == target]
    # The target's series first, so trimming never drops the ones the decision rests on.
    shown = mine + [s for s in samples if s not in mine]
    observed["samples"] = trim([{"metric": labels, "value": value} for labels, value, _ in shown])
    label = check.endpoint.service_label
    if not mine:
        others = sorted({str(s[0].get(label, f"<no {label} label>")) for s in samples})
        elsewhere = f" (series for {', '.join(others)})" if others else ""
        return answer(False, f"{query} returned no series for {target}{elsewhere}")
    holding = [s for s in mine if spec.holds(s[1])]
    if holding:
        _, value, at = holding[0]
        return answer(True, f"{query} is {value:g} for {target}, {claimed}", at)
    values = ", ".join(f"{v:g}" for _, v, _ in mine)
    return answer(False, f"{query} is {values} for {target}, not {claimed}", mine[0][2])


async def rule_state(
    endpoint: Endpoint, alertname: str, target: str, check: SourceCheck
) -> tuple[str | None, dict[str, Any], int]:
    """The state ('firing', 'pending' or None) of Prometheus' own alert `alertname` for the
    target, from GET /api/v1/alerts; raises SourceUnavailable if no URL answers."""
    response, attempts, url = await _fetch.get(
        endpoint, "/api/v1/alerts", retries=check.retries, backoff=check.backoff, retry_server_errors=True
    )
    body = _fetch.json_body(response)
    observed: dict[str, Any] = {"url": url, "alertname": alertname}
    info = body if isinstance(body, dict) else {}
    if response.status_code != 200 or info.get("status") != "success":
        observed["error"] = _fetch.error_text(response) or f"HTTP {response.status_code}"
        return "unknown", observed, attempts
    alerts = (info.get("data") or {}).get("alerts") or []
    states = [
        a.get("state")
        for a in alerts
        if isinstance(a, dict)
        and isinstance(a.get("labels"), dict)
        and a["labels"].get("alertname") == alertname
        and check.canonical(a["labels"].get(endpoint.service_label)) == target
    ]
    observed["states"] = states
    if "firing" in states:
        return "firing", observed, attempts
    return ("pending" if "pending" in states else None), observed, attempts


def _sample(raw: Any) -> Sample | None:
    """(labels, value, timestamp) of one instant-vector sample, or None if malformed."""
    try:
        labels = raw["metric"]
        ts, text = raw["value"]
        return dict(labels), float(text), datetime.fromtimestamp(float(ts), UTC)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None

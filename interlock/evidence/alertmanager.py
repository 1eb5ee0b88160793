"""The Alertmanager connector (API v2): is the named alert active for the target service?"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from interlock.evidence import _fetch
from interlock.evidence._fetch import clock, parse_time, trim
from interlock.evidence.confirmation import Confirmation, SourceCheck, refused
from interlock.evidence.refs import AlertClaim, Matcher


async def confirm_alert(claim: AlertClaim, check: SourceCheck) -> Confirmation:
    """Supported iff an active alert of that name has a `service` label naming the target."""
    if claim.service is not None and (refusal := check.not_about_target(claim.service)):
        return refused(refusal)
    target, name = check.target, claim.alertname
    # The service matcher is not sent: the source may label the service by any alias, so
    # it is compared here after normalising rather than filtered on as an exact string.
    filters = [Matcher("alertname", "=", name), *claim.matchers]
    params = [("filter", m.render()) for m in filters]
    params += [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
    url = f"{check.base_url}/api/v2/alerts"
    response, attempts = await _fetch.get(
        check.http,
        url,
        params=params,
        retries=check.retries,
        backoff=check.backoff,
        retry_server_errors=True,
    )
    body = _fetch.json_body(response)
    observed: dict[str, Any] = {"url": url, "filter": [m.render() for m in filters]}

    def answer(supports: bool, reason: str, at: datetime | None = None) -> Confirmation:
        return Confirmation(
            fetched=True,
            supports=supports,
            reason=reason,
            observed=observed,
            source_time=at or _fetch.response_time(response),
            attempts=attempts,
        )

    if response.status_code != 200 or not isinstance(body, list):
        observed["answer"] = trim(body)
        return answer(False, f"alertmanager did not list alerts (HTTP {response.status_code})")

    active = [a for a in body if isinstance(a, dict) and _is_active(a, name, check.now)]
    mine = [a for a in active if check.canonical(a["labels"].get("service")) == target]
    # The target's alerts first, so trimming never drops the ones the decision rests on.
    observed["alerts"] = trim([_summary(a) for a in mine + [a for a in active if a not in mine]])
    if not mine:
        others = sorted({str(a["labels"].get("service", "<no service label>")) for a in active})
        elsewhere = f" (active for {', '.join(others)})" if others else ""
        return answer(False, f"no active alert {name} for {target}{elsewhere}")
    starts = [t for a in mine if (t := parse_time(a.get("startsAt"))) is not None]
    since = min(starts) if starts else None
    when = f" since {clock(since, check.now)}" if since else ""
    return answer(True, f"alert {name} is active for {target}{when}", since)


def _is_active(alert: dict[str, Any], name: str, now: datetime) -> bool:
    # Asked for active alerts only, but a proxy or an old Alertmanager may ignore the
    # parameters: the state and end time are checked again here.
    labels = alert.get("labels")
    status = alert.get("status")
    if not isinstance(labels, dict) or labels.get("alertname") != name:
        return False
    if not isinstance(status, dict) or status.get("state") != "active":
        return False
    ends = parse_time(alert.get("endsAt"))
    return ends is None or ends > now


def _summary(alert: dict[str, Any]) -> dict[str, Any]:
    annotations = alert.get("annotations")
    return {
        "labels": alert.get("labels"),
        "startsAt": alert.get("startsAt"),
        "state": alert["status"].get("state"),
        "summary": annotations.get("summary") if isinstance(annotations, dict) else None,
        "fingerprint": alert.get("fingerprint"),
    }

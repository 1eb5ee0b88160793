"""The Alertmanager connector (API v2): is the check's alert active for the target service?

Silenced and inhibited alerts are asked for too (the API's default) and read by their
`status.state`: a `suppressed` alert is reported as such, never as "no active alert".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from interlock.evidence import _fetch
from interlock.evidence._fetch import SourceUnavailable, clock, parse_time, trim
from interlock.evidence.confirmation import Confirmation, SourceCheck
from interlock.evidence.prometheus import rule_state
from interlock.evidence.refs import Matcher
from interlock.sources import AlertCheck


async def confirm_alert(spec: AlertCheck, check: SourceCheck) -> Confirmation:
    """Supported iff an active (not suppressed) alert of that name names the target."""
    target, name = check.target, spec.alert
    # The service matcher is not sent: the source may label the service by any alias, so
    # it is compared here after normalising rather than filtered on as an exact string.
    filters = [Matcher("alertname", "=", name)]
    filters += [Matcher(k, "=", check.render(v, quote=False)) for k, v in spec.matchers.items()]
    params = [("filter", m.render()) for m in filters]
    params += [("active", "true"), ("silenced", "true"), ("inhibited", "true")]
    response, attempts, url = await _fetch.get(
        check.endpoint,
        "/api/v2/alerts",
        params=params,
        retries=check.retries,
        backoff=check.backoff,
        retry_server_errors=True,
    )
    body = _fetch.json_body(response)
    observed: dict[str, Any] = {"url": url, "filter": [m.render() for m in filters]}

    def answer(supports: bool, reason: str, at: datetime | None = None, **kw: Any) -> Confirmation:
        return Confirmation(
            fetched=kw.pop("fetched", True),
            supports=supports,
            reason=reason,
            observed=observed,
            source_time=at or _fetch.response_time(response),
            attempts=attempts,
            **kw,
        )

    if response.status_code != 200 or not isinstance(body, list):
        observed["answer"] = trim(body)
        # Not fetched: a refusal (401, 403, 400) says nothing about the alert, so after a
        # change it must never read as "cleared".
        return answer(
            False,
            f"alertmanager did not list alerts (HTTP {response.status_code}): {_fetch.error_text(response)}",
            fetched=False,
        )

    current = [a for a in body if _is_current(a, name, check.now)]
    mine = [a for a in current if check.service_of(a["labels"]) == target]
    # The target's alerts first, so trimming never drops the ones the decision rests on.
    observed["alerts"] = trim([_summary(a) for a in mine + [a for a in current if a not in mine]])
    active = [a for a in mine if a["status"].get("state") == "active"]
    if active:
        starts = [t for a in active if (t := parse_time(a.get("startsAt"))) is not None]
        since = min(starts) if starts else None
        when = f" since {clock(since, check.now)}" if since else ""
        return answer(True, f"alert {name} is active for {target}{when}", since)
    suppressed = [a for a in mine if a["status"].get("state") == "suppressed"]
    if suppressed:
        by = await _suppressors(suppressed, check)
        what = f"alert {name} for {target} is suppressed ({'; '.join(by)})"
        if check.after_change and check.rules is not None:
            return await _at_the_rule(name, what, by, check, observed, attempts)
        tail = (
            ": could not tell whether it cleared"
            if check.after_change
            else ": a suppressed alert does not confirm the claim"
        )
        return answer(False, what + tail, fetched=False, suppressed=True, suppressed_by=by)
    label = check.endpoint.service_label
    others = sorted({str(a["labels"].get(label, f"<no {label} label>")) for a in current})
    elsewhere = f" (active for {', '.join(others)})" if others else ""
    return answer(False, f"no active alert {name} for {target}{elsewhere}")


async def _at_the_rule(
    name: str, what: str, by: list[str], check: SourceCheck, observed: dict[str, Any], attempts: int
) -> Confirmation:
    """After a change, a suppressed alert is looked up where it is evaluated: its rule."""
    assert check.rules is not None
    try:
        state, seen, more = await rule_state(check.rules, name, check.target, check)
    except SourceUnavailable as err:
        state, seen, more = "unknown", {"error": str(err)}, err.attempts
    observed["rule"] = seen
    common: dict[str, Any] = {
        "observed": observed,
        "attempts": attempts + more,
        "suppressed": True,
        "suppressed_by": by,
    }
    if state == "unknown":
        reason = (
            f"{what}, and its Prometheus rule could not be read ({seen.get('error')}): "
            "could not tell whether it cleared"
        )
        return Confirmation(fetched=False, supports=False, reason=reason, **common)
    if state is not None:
        reason = f"{what}; its Prometheus rule is still {state} for {check.target}"
        return Confirmation(fetched=True, supports=True, reason=reason, **common)
    reason = f"{what}; its Prometheus rule no longer fires for {check.target}"
    return Confirmation(fetched=True, supports=False, reason=reason, **common)


async def _suppressors(alerts: list[dict[str, Any]], check: SourceCheck) -> list[str]:
    """'silenced by <id>' and 'inhibited by <alertname>{labels}' for each suppressed alert."""
    silences = sorted({str(s) for a in alerts for s in a["status"].get("silencedBy") or []})
    inhibitors = sorted({str(f) for a in alerts for f in a["status"].get("inhibitedBy") or []})
    named = await _alerts_by_fingerprint(check) if inhibitors else {}
    out = [f"silenced by {s}" for s in silences]
    out += [f"inhibited by {named.get(f, 'alert')} (fingerprint {f})" for f in inhibitors]
    return out or ["suppressed"]


async def _alerts_by_fingerprint(check: SourceCheck) -> dict[str, str]:
    try:
        response, _, _ = await _fetch.get(
            check.endpoint, "/api/v2/alerts", retries=1, backoff=0, retry_server_errors=True
        )
    except SourceUnavailable:
        return {}
    body = _fetch.json_body(response)
    found: dict[str, str] = {}
    for a in body if isinstance(body, list) else []:
        if isinstance(a, dict) and isinstance(a.get("labels"), dict):
            labels = dict(a["labels"])
            alertname = labels.pop("alertname", "?")
            label = check.endpoint.service_label
            shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k == label)
            found[str(a.get("fingerprint"))] = f"{alertname}{{{shown}}}"
    return found


def _is_current(alert: Any, name: str, now: datetime) -> bool:
    # A proxy or an old Alertmanager may ignore the filter: name and end time are checked here.
    if not isinstance(alert, dict):
        return False
    labels = alert.get("labels")
    status = alert.get("status")
    if not isinstance(labels, dict) or labels.get("alertname") != name:
        return False
    if not isinstance(status, dict):
        return False
    ends = parse_time(alert.get("endsAt"))
    return ends is None or ends > now


def _summary(alert: dict[str, Any]) -> dict[str, Any]:
    annotations = alert.get("annotations")
    status = alert["status"]
    return {
        "labels": alert.get("labels"),
        "startsAt": alert.get("startsAt"),
        "state": status.get("state"),
        "silencedBy": status.get("silencedBy") or [],
        "inhibitedBy": status.get("inhibitedBy") or [],
        "summary": annotations.get("summary") if isinstance(annotations, dict) else None,
        "fingerprint": alert.get("fingerprint"),
    }

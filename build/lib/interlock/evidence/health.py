"""The http-health connector: does the service's health check fail right now?"""

from __future__ import annotations

from urllib.parse import quote

from interlock.evidence import _fetch
from interlock.evidence._fetch import trim
from interlock.evidence.confirmation import Confirmation, SourceCheck
from interlock.sources import SERVICE_PLACEHOLDER, HealthCheck


async def confirm_health(spec: HealthCheck, check: SourceCheck) -> Confirmation:
    """Supported iff the endpoint answers 5xx, or 2xx with a JSON `status` other than the
    check's `healthy_status`."""
    target = check.target
    # The canonical name, not an alias: sources know services by that.
    path = spec.path.replace(SERVICE_PLACEHOLDER, quote(target, safe=""))
    # A 503 is the answer this check is about, not an outage of the source: no retry on it.
    response, attempts, url = await _fetch.get(
        check.endpoint, path, retries=check.retries, backoff=check.backoff, retry_server_errors=False
    )
    code = response.status_code
    body = _fetch.json_body(response)
    info = body if isinstance(body, dict) else {}

    def answer(supports: bool, reason: str, fetched: bool = True) -> Confirmation:
        return Confirmation(
            fetched=fetched,
            supports=supports,
            reason=reason,
            observed={"url": url, "status_code": code, "body": trim(body)},
            source_time=_fetch.response_time(response),
            attempts=attempts,
        )

    answered_for = info.get(check.endpoint.service_label)
    if answered_for is not None and check.canonical(answered_for) != target:
        # Not fetched (here and below): an answer that says nothing about the target's health
        # must never read as "cleared" after a change.
        return answer(
            False, f"the health endpoint answered for {answered_for!r}, not {target}", fetched=False
        )
    if answered_for is None and SERVICE_PLACEHOLDER not in spec.path:
        return answer(
            False, f"cannot tell which service {spec.path} reports on: it names none", fetched=False
        )
    if 400 <= code < 500:
        # A 404 for an unknown service says nothing about health; only a failing check does.
        return answer(
            False, f"{url} answered HTTP {code}, which says nothing about {target}'s health", fetched=False
        )
    status = info.get("status")
    shown = f"HTTP {code}" + (f", status {status!r}" if status is not None else "")
    if code >= 500 or (200 <= code < 300 and status is not None and status != spec.healthy_status):
        why = f": {info['reason']}" if isinstance(info.get("reason"), str) else ""
        return answer(True, f"{target} fails its health check ({shown}){why}")
    if 200 <= code < 300:
        return answer(False, f"{target} is healthy ({shown})")
    return answer(False, f"{url} answered HTTP {code}, which is not a health check answer", fetched=False)

"""The http-health connector: does the service's health check fail right now?"""

from __future__ import annotations

from interlock.evidence import _fetch
from interlock.evidence._fetch import trim
from interlock.evidence.confirmation import Confirmation, SourceCheck, refused
from interlock.evidence.refs import HealthClaim


async def confirm_health(claim: HealthClaim, check: SourceCheck) -> Confirmation:
    """Supported iff the endpoint answers 5xx, or 2xx with a JSON status other than 'ok'."""
    if claim.service is not None and (refusal := check.not_about_target(claim.service)):
        return refused(refusal)
    target = check.target
    # The canonical name, not the ref's alias: sources know services by that.
    url = check.base_url + claim.path_for(target)
    # A 503 is the answer this claim is about, not an outage of the source: no retry on it.
    response, attempts = await _fetch.get(
        check.http, url, retries=check.retries, backoff=check.backoff, retry_server_errors=False
    )
    code = response.status_code
    body = _fetch.json_body(response)
    info = body if isinstance(body, dict) else {}

    def answer(supports: bool, reason: str) -> Confirmation:
        return Confirmation(
            fetched=True,
            supports=supports,
            reason=reason,
            observed={"url": url, "status_code": code, "body": trim(body)},
            source_time=_fetch.response_time(response),
            attempts=attempts,
        )

    answered_for = info.get("service")
    if answered_for is not None and check.canonical(answered_for) != target:
        return answer(False, f"the health endpoint answered for {answered_for!r}, not {target}")
    if answered_for is None and claim.service is None:
        return answer(False, f"cannot tell which service {claim.path} reports on: it names none")
    if 400 <= code < 500:
        # A 404 for an unknown service says nothing about health; only a failing check does.
        return answer(
            False, f"{url} answered HTTP {code}, which says nothing about {target}'s health"
        )
    status = info.get("status")
    shown = f"HTTP {code}" + (f", status {status!r}" if status is not None else "")
    if code >= 500 or (200 <= code < 300 and status is not None and status != "ok"):
        why = f": {info['reason']}" if isinstance(info.get("reason"), str) else ""
        return answer(True, f"{target} fails its health check ({shown}){why}")
    if 200 <= code < 300:
        return answer(False, f"{target} is healthy ({shown})")
    return answer(False, f"{url} answered HTTP {code}, which is not a health check answer")

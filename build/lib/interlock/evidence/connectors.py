"""Evidence connectors: confirm each evidence item a recommender cites at its source.

Nothing is taken on the recommender's word: the item names a check the policy defines, the
source is asked about it with the policy's query and threshold, and a source that cannot be
asked, or an answer that is not about the target, leaves the item unconfirmed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from interlock.evidence._fetch import Endpoint, SourceUnavailable
from interlock.evidence.alertmanager import confirm_alert
from interlock.evidence.changes import confirm_change
from interlock.evidence.confirmation import (
    Confirmation,
    Normalise,
    RecentChanges,
    SourceCheck,
    refused,
)
from interlock.evidence.credentials import CredentialError, load_credentials, redact
from interlock.evidence.fetch_stats import FETCH_STATS
from interlock.evidence.health import confirm_health
from interlock.evidence.prometheus import confirm_query
from interlock.evidence.refs import CHANGES, RefError, parse_change
from interlock.lab import Lab
from interlock.models import EvidenceItem
from interlock.sources import AlertCheck, HealthCheck, PrometheusCheck, SourceSpec

logger = logging.getLogger("interlock.evidence")

LAB_MONITOR = "lab://monitor"
HttpFor = Callable[[SourceSpec], httpx.AsyncClient]


def resolve_base_url(url: str, lab_root: Path | None) -> str:
    """The HTTP base URL of a policy source URL; ``lab://monitor`` is the lab's monitor.

    Blocking: it reads the lab's configuration. Raises ValueError (or LabError) if it cannot.
    """
    if url.startswith("lab://"):
        if url.rstrip("/") != LAB_MONITOR:
            raise ValueError(f"unknown lab address {url!r}: only {LAB_MONITOR} exists")
        if lab_root is None:
            raise ValueError(f"{LAB_MONITOR} needs a lab root, and none is configured")
        # The port from lab.json, not Lab.status(): that probes every service, and a
        # service that is down must not slow down asking the monitor about it.
        port = int(Lab(lab_root).config["monitor_port"])
        return f"http://127.0.0.1:{port}"
    return url.rstrip("/")


def cited_check(source: str, spec: SourceSpec, ref: str) -> str:
    """The name of the check `ref` cites; raises RefError naming the checks there are."""
    name = ref.strip()
    if spec.kind == CHANGES:
        parse_change(ref)
        return "deploy"
    if name not in spec.checks:
        raise RefError(
            f"{ref!r} is not a check of {source}: cite one of {', '.join(spec.checks)} by name "
            "(free-form expressions are refused)"
        )
    return name


async def confirm(
    source: str,
    spec: SourceSpec,
    ref: str,
    *,
    endpoint: Endpoint | None,
    target_service: str,
    normalise: Normalise,
    max_age: timedelta,
    now: datetime,
    after_change: bool = False,
    rules: Endpoint | None = None,
    recent_changes: RecentChanges | None = None,
    retries: int = 3,
    backoff: float = 0.5,
) -> Confirmation:
    """Ask the source whether the check `ref` names holds for `target_service` now. Never raises.

    `retries` is the number of rounds over the source's URLs; between them the wait doubles
    from `backoff` seconds. `normalise` maps a service alias to its canonical name, or None.
    """
    try:
        check_name = cited_check(source, spec, ref)
    except RefError as err:
        return refused(str(err))
    target = normalise(target_service)
    if target is None:
        return refused(f"the target {target_service!r} is not a catalogued service")
    if endpoint is None:
        endpoint = Endpoint(http=None, bases=())
    check = SourceCheck(
        source=source,
        check=check_name,
        endpoint=endpoint,
        target=target,
        normalise=normalise,
        max_age=max_age,
        # A naive `now` would make every comparison with a source's aware time raise.
        now=now if now.tzinfo is not None else now.replace(tzinfo=UTC),
        recent_changes=recent_changes,
        retries=retries,
        backoff=backoff,
        after_change=after_change,
        rules=rules,
    )
    started = time.monotonic()
    try:
        result = await _confirm_check(spec, ref, check)
    except SourceUnavailable as err:
        result = refused(str(err), attempts=err.attempts, observed={"url": err.url})
    except Exception as err:
        # A connector bug must leave the item unconfirmed, never confirmed and never crash
        # the other items' checks; the traceback goes to the log.
        logger.exception("evidence check %s %s failed", source, check_name)
        result = refused(f"could not check the source: {type(err).__name__}: {err}")
    # A failure: the source gave no answer that settles the item (a suppressed alert did answer).
    FETCH_STATS.record(source, time.monotonic() - started, not result.fetched and not result.suppressed)
    logger.info(
        "evidence %s %s for %s: %s",
        source,
        check_name,
        target,
        "confirmed" if result.supports else ("suppressed" if result.suppressed else "not confirmed"),
        extra={
            "evidence_source": source,
            "evidence_check": check_name,
            "target_service": target,
            "fetched": result.fetched,
            "supports": result.supports,
            "attempts": result.attempts,
        },
    )
    return result


async def _confirm_check(spec: SourceSpec, ref: str, check: SourceCheck) -> Confirmation:
    if spec.kind == CHANGES:
        return await confirm_change(parse_change(ref), check)
    found = spec.checks[check.check]
    if isinstance(found, HealthCheck):
        return await confirm_health(found, check)
    if isinstance(found, AlertCheck):
        return await confirm_alert(found, check)
    assert isinstance(found, PrometheusCheck)
    return await confirm_query(found, check)


async def check_items(
    items: Sequence[EvidenceItem],
    *,
    sources: Mapping[str, SourceSpec],
    target_service: str,
    normalise: Normalise,
    http_for: HttpFor,
    max_age: timedelta | Mapping[str, timedelta],
    now: datetime,
    lab_root: Path | None = None,
    after_change: bool = False,
    recent_changes: RecentChanges | None = None,
    retries: int = 3,
    backoff: float = 0.5,
) -> list[Confirmation]:
    """Confirm every item concurrently; the results are in the items' order.

    `sources` is the policy's catalog (``lab://monitor`` resolved against `lab_root`);
    `http_for` gives the HTTP client for a source (its TLS settings); `max_age` is one limit
    for all or one per source. No secret a source is asked with appears in the results.
    """
    wanted = {
        url
        for i in items
        if (s := sources.get(i.source)) is not None and s.kind != CHANGES
        for url in s.all_urls
    }
    # Each distinct URL once, off the event loop: resolving lab://monitor is blocking I/O.
    resolved = await asyncio.gather(
        *(asyncio.to_thread(resolve_base_url, url, lab_root) for url in wanted),
        return_exceptions=True,
    )
    bases = dict(zip(wanted, resolved, strict=True))

    def endpoint(name: str, spec: SourceSpec) -> tuple[Endpoint, tuple[str, ...]]:
        """Raises ValueError (a URL that cannot be resolved) or CredentialError."""
        found = []
        for url in spec.all_urls:
            base = bases.get(url)
            if base is None:
                base = resolve_base_url(url, lab_root)
            if isinstance(base, BaseException):
                raise ValueError(f"cannot resolve the URL {url!r} of source {name}: {base}")
            found.append(base.rstrip("/") + spec.path_prefix.rstrip("/"))
        creds = load_credentials(spec)
        return (
            Endpoint(
                http=http_for(spec),
                bases=tuple(found),
                headers=creds.headers,
                auth=creds.auth,
                timeout=spec.timeout.total_seconds(),
                service_label=spec.service_label,
            ),
            creds.secrets,
        )

    async def one(item: EvidenceItem) -> Confirmation:
        spec = sources.get(item.source)
        if spec is None:
            return refused(f"source {item.source!r} is not a configured evidence source")
        limit = max_age if isinstance(max_age, timedelta) else max_age.get(item.source)
        if limit is None:
            return refused(f"source {item.source!r} has no max age configured")
        ep: Endpoint | None = None
        rules: Endpoint | None = None
        secrets: tuple[str, ...] = ()
        try:
            if spec.kind != CHANGES:
                ep, secrets = endpoint(item.source, spec)
            rules_spec = sources.get(spec.rules_source) if spec.rules_source else None
            if rules_spec is not None and after_change:
                rules, more = endpoint(str(spec.rules_source), rules_spec)
                secrets += more
        except (ValueError, CredentialError) as err:
            return refused(f"cannot ask source {item.source}: {err}")
        result = await confirm(
            item.source,
            spec,
            item.ref,
            endpoint=ep,
            target_service=target_service,
            normalise=normalise,
            max_age=limit,
            now=now,
            after_change=after_change,
            rules=rules,
            recent_changes=recent_changes,
            retries=retries,
            backoff=backoff,
        )
        # A source may echo what it was sent (an error page quoting a header): scrub it.
        return result.model_copy(
            update={
                "reason": redact(result.reason, secrets),
                "observed": redact(result.observed, secrets),
            }
        )

    return list(await asyncio.gather(*(one(item) for item in items)))

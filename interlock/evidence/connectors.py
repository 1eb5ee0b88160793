"""Evidence connectors: confirm each evidence item a recommender cites at its source.

Nothing is taken on the recommender's word: a source that cannot be asked, or an answer
that is not about the target, leaves the item unconfirmed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from interlock.evidence._fetch import SourceUnavailable
from interlock.evidence.alertmanager import confirm_alert
from interlock.evidence.changes import confirm_change
from interlock.evidence.confirmation import (
    Confirmation,
    Normalise,
    RecentChanges,
    SourceCheck,
    refused,
)
from interlock.evidence.health import confirm_health
from interlock.evidence.prometheus import confirm_query
from interlock.evidence.refs import (
    CHANGES,
    AlertClaim,
    Claim,
    HealthClaim,
    QueryClaim,
    parse_ref,
)
from interlock.lab import Lab
from interlock.models import EvidenceItem

logger = logging.getLogger("interlock.evidence")

LAB_MONITOR = "lab://monitor"


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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"source URL {url!r} is not an http(s) URL or {LAB_MONITOR}")
    return url.rstrip("/")


async def confirm(
    item_source_kind: str,
    base_url: str,
    ref: str,
    *,
    target_service: str,
    normalise: Normalise,
    http: httpx.AsyncClient,
    max_age: timedelta,
    now: datetime,
    recent_changes: RecentChanges | None = None,
    retries: int = 3,
    backoff: float = 0.5,
) -> Confirmation:
    """Ask the source whether `ref` holds for `target_service` now. Never raises.

    `retries` is the number of attempts in all; between them the wait doubles from `backoff`
    seconds. `normalise` maps a service alias to its canonical name, or None if unknown.
    """
    try:
        claim = parse_ref(item_source_kind, ref)
    except ValueError as err:
        return refused(str(err))
    target = normalise(target_service)
    if target is None:
        return refused(f"the target {target_service!r} is not a catalogued service")
    check = SourceCheck(
        base_url=base_url.rstrip("/"),
        target=target,
        normalise=normalise,
        http=http,
        max_age=max_age,
        # A naive `now` would make every comparison with a source's aware time raise.
        now=now if now.tzinfo is not None else now.replace(tzinfo=UTC),
        recent_changes=recent_changes,
        retries=retries,
        backoff=backoff,
    )
    try:
        result = await _confirm_claim(claim, check)
    except SourceUnavailable as err:
        result = refused(str(err), attempts=err.attempts, observed={"url": err.url})
    except Exception as err:
        # A connector bug must leave the item unconfirmed, never confirmed and never crash
        # the other items' checks; the traceback goes to the log.
        logger.exception("evidence check of %s %r failed", item_source_kind, ref)
        result = refused(f"could not check the source: {type(err).__name__}: {err}")
    logger.info(
        "evidence %s %r for %s: %s (%s)",
        item_source_kind,
        ref,
        target,
        "confirmed" if result.supports else "not confirmed",
        result.reason,
        extra={
            "evidence_kind": item_source_kind,
            "evidence_ref": ref,
            "target_service": target,
            "fetched": result.fetched,
            "supports": result.supports,
            "attempts": result.attempts,
        },
    )
    return result


async def _confirm_claim(claim: Claim, check: SourceCheck) -> Confirmation:
    if isinstance(claim, HealthClaim):
        return await confirm_health(claim, check)
    if isinstance(claim, AlertClaim):
        return await confirm_alert(claim, check)
    if isinstance(claim, QueryClaim):
        return await confirm_query(claim, check)
    return await confirm_change(claim, check)


async def check_items(
    items: Sequence[EvidenceItem],
    *,
    kinds: Mapping[str, str],
    urls: Mapping[str, str],
    target_service: str,
    normalise: Normalise,
    http: httpx.AsyncClient,
    max_age: timedelta | Mapping[str, timedelta],
    now: datetime,
    lab_root: Path | None = None,
    recent_changes: RecentChanges | None = None,
    retries: int = 3,
    backoff: float = 0.5,
) -> list[Confirmation]:
    """Confirm every item concurrently; the results are in the items' order.

    `kinds` and `urls` are the policy's sources (name -> kind, name -> URL, ``lab://monitor``
    resolved against `lab_root`); `max_age` is one limit for all or one per source.
    """
    wanted = {urls.get(i.source, "") for i in items if kinds.get(i.source, CHANGES) != CHANGES}
    # Each distinct URL once, off the event loop: resolving lab://monitor is blocking I/O.
    resolved = await asyncio.gather(
        *(asyncio.to_thread(resolve_base_url, url, lab_root) for url in wanted),
        return_exceptions=True,
    )
    bases = dict(zip(wanted, resolved, strict=True))

    async def one(item: EvidenceItem) -> Confirmation:
        kind = kinds.get(item.source)
        if kind is None:
            return refused(f"source {item.source!r} is not a configured evidence source")
        limit = max_age if isinstance(max_age, timedelta) else max_age.get(item.source)
        if limit is None:
            return refused(f"source {item.source!r} has no max age configured")
        base = ""
        if kind != CHANGES:
            url = urls.get(item.source, "")
            found = bases[url]
            if isinstance(found, BaseException):
                return refused(f"cannot resolve the URL {url!r} of source {item.source}: {found}")
            base = found
        return await confirm(
            kind,
            base,
            item.ref,
            target_service=target_service,
            normalise=normalise,
            http=http,
            max_age=limit,
            now=now,
            recent_changes=recent_changes,
            retries=retries,
            backoff=backoff,
        )

    return list(await asyncio.gather(*(one(item) for item in items)))

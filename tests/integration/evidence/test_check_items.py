"""`check_items` with the default policy's sources and the lifecycle's example evidence."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.evidence import check_items, resolve_base_url
from interlock.examples import example_proposal
from interlock.lab import Lab
from interlock.models import EvidenceItem
from interlock.policy import load_policy
from interlock.sources import SourceSpec

POLICY = load_policy(None)
KINDS = {name: s.kind for name, s in POLICY.sources.items()}


def item(source: str, ref: str) -> EvidenceItem:
    observed = datetime.now(UTC).isoformat()
    return EvidenceItem.model_validate_json(
        json.dumps({"source": source, "ref": ref, "observed_at": observed})
    )


def example_items() -> list[EvidenceItem]:
    doc = example_proposal("restart_service", service="checkout-api")
    return [EvidenceItem.model_validate_json(json.dumps(e)) for e in doc["evidence"]]


async def check(http: httpx.AsyncClient, items: list[EvidenceItem], **kw: Any) -> list[Any]:
    kw.setdefault("sources", POLICY.sources)
    kw.setdefault("max_age", timedelta(minutes=30))
    return await check_items(
        items,
        target_service=kw.pop("target_service", "checkout-api"),
        normalise=POLICY.canonical_service,
        http_for=lambda _: http,
        now=datetime.now(UTC),
        backoff=0.05,
        **kw,
    )


async def test_the_example_evidence_holds_exactly_while_the_service_fails(
    http: httpx.AsyncClient, healthy_lab: Lab
) -> None:
    items = example_items()
    assert [(i.source, i.ref) for i in items] == [
        ("lab-monitor", "unhealthy"),
        ("lab-alertmanager", "high_error_rate"),
    ]

    healthy = await check(http, items, lab_root=healthy_lab.root)
    assert all(c.fetched and not c.supports for c in healthy), healthy

    healthy_lab.degrade("checkout-api")
    failing = await check(http, items, lab_root=healthy_lab.root)
    assert all(c.fetched and c.supports for c in failing), failing


async def test_items_are_checked_against_their_own_sources_in_order(
    http: httpx.AsyncClient, healthy_lab: Lab
) -> None:
    healthy_lab.degrade("checkout-api")
    items = [
        item("lab-prometheus", "high_error_ratio"),
        item("splunk", "index=main"),
        item("lab-alertmanager", "high_error_rate"),
        item("lab-monitor", "unhealthy"),
        # Another source's check is not this source's.
        item("lab-alertmanager", "unhealthy"),
    ]
    results = await check(
        http,
        items,
        lab_root=healthy_lab.root,
        max_age={s: timedelta(minutes=30) for s in KINDS},
        target_service="checkout",
    )
    assert [r.supports for r in results] == [True, False, True, True, False]
    assert results[1].reason == "source 'splunk' is not a configured evidence source"
    assert results[4].reason.startswith("'unhealthy' is not a check of lab-alertmanager")


async def test_change_sources_need_no_url(http: httpx.AsyncClient) -> None:
    def recent_changes(service: str) -> list[dict[str, Any]]:
        return [{"release": "v2", "status": "completed", "finished_at": datetime.now(UTC)}]

    [result] = await check(
        http,
        [item("deploys", "deploy:checkout-api:v2")],
        sources={"deploys": SourceSpec(kind="changes")},
        max_age={"deploys": timedelta(hours=1)},
        recent_changes=recent_changes,
    )
    assert result.supports, result.reason


async def test_a_source_without_a_max_age_is_refused(http: httpx.AsyncClient) -> None:
    [result] = await check(http, [item("lab-monitor", "unhealthy")], max_age={}, lab_root=None)
    assert not result.supports
    assert result.reason == "source 'lab-monitor' has no max age configured"


async def test_a_lab_url_without_a_lab_is_refused(http: httpx.AsyncClient, tmp_path: Path) -> None:
    items = [item("lab-monitor", "unhealthy")]
    [no_root] = await check(http, items, lab_root=None)
    assert not no_root.fetched and not no_root.supports
    assert no_root.reason == (
        "cannot ask source lab-monitor: cannot resolve the URL 'lab://monitor' of source "
        "lab-monitor: lab://monitor needs a lab root, and none is configured"
    )
    [no_lab] = await check(http, items, lab_root=tmp_path)
    assert not no_lab.supports and "no lab at" in no_lab.reason


async def test_items_are_checked_concurrently(http: httpx.AsyncClient) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        am = POLICY.sources["lab-alertmanager"].model_copy(update={"url": base})
        sources = {f"am{n}": am for n in range(3)}
        began = time.monotonic()
        results = await check(http, [item(s, "high_error_rate") for s in sources], sources=sources, retries=1)
        elapsed = time.monotonic() - began
    assert all(not r.fetched and "timed out" in r.reason for r in results)
    # Three 2 s timeouts one after another would take 6 s.
    assert elapsed < 5


def test_resolve_base_url(healthy_lab: Lab, tmp_path: Path) -> None:
    monitor = healthy_lab.status()["monitor"]["url"]
    assert resolve_base_url("lab://monitor", healthy_lab.root) == monitor
    assert resolve_base_url("lab://monitor/", healthy_lab.root) == monitor
    assert resolve_base_url("https://am.example.com/", None) == "https://am.example.com"
    with pytest.raises(ValueError, match="only lab://monitor exists"):
        resolve_base_url("lab://grafana", tmp_path)
    # Other URLs are checked when the policy is read.
    for url in ("ftp://am.example.com", "am.example.com:9093"):
        with pytest.raises(ValueError, match=r"not an http\(s\) URL"):
            SourceSpec(kind="alertmanager", url=url, checks={"a": {"alert": "A"}})

"""The governance metrics leave Interlock two ways: a Prometheus `/metrics` endpoint and
OpenTelemetry gauges. Both carry the figures compute_metrics gives for the same store.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from interlock.audit import open_store
from interlock.audit.exporter import CachedFigures, meter_provider, serve_metrics
from interlock.settings import Settings
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import decision, event, final

# A completed in 300 s after a person approved at 60 s; B open; C rejected by a person.
EVENTS = [
    event("A", "submitted", 0),
    decision("A", 60),
    final("A", 300, "completed"),
    event("B", "submitted", 100),
    event("C", "submitted", 0),
    decision("C", 30, "reject"),
    final("C", 31, "rejected"),
    event("C", "audit_exception", 40, data={"problem": "missing"}),
]


def settings_for(backend: Backend, home: Path) -> Settings:
    return Settings(home=home, database_url=backend.url if backend.name == "postgresql" else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_metrics_endpoint(backend: Backend, tmp_path: Path) -> None:
    s = settings_for(backend, tmp_path)
    with open_store(s) as store:
        for e in EVENTS:
            store.append(e)
    port = free_port()
    server = asyncio.create_task(serve_metrics(s, port))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    response = await http.get("/metrics")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            lines = set(response.text.splitlines())
            assert "interlock_backlog 1" in lines
            assert "interlock_mttr_seconds_count 1" in lines
            assert "interlock_mttr_seconds_sum 300" in lines
            assert "interlock_override_ratio 0.5" in lines  # one rejection of two human decisions
            assert "interlock_false_recommendation_ratio 0.5" in lines  # C of the finals A and C
            assert "interlock_audit_exceptions 1" in lines
            assert (await http.get("/other")).status_code == 404
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def test_opentelemetry_gauges(backend: Backend, tmp_path: Path) -> None:
    s = settings_for(backend, tmp_path)
    with open_store(s) as store:
        for e in EVENTS:
            store.append(e)
    reader = InMemoryMetricReader()
    figures = CachedFigures(lambda: open_store(s))
    provider = meter_provider(figures, [reader])
    try:
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
        figures.close()
    values = {
        m.name: m.data.data_points[0].value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.data.data_points
    }
    assert values["interlock.mttr.mean"] == 300
    assert values["interlock.first_response.median"] == 45  # (60 + 30) / 2
    assert values["interlock.backlog"] == 1
    assert values["interlock.override.ratio"] == 0.5
    assert values["interlock.false_recommendation.ratio"] == 0.5
    assert values["interlock.escalation.ratio"] == 0
    assert values["interlock.audit.exceptions"] == 1

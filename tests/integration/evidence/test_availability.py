"""Sources that are down: retried with backoff, and never taken as confirmation."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from interlock.lab import Lab
from interlock.lab.monitor import Monitor, make_handler
from tests.integration.evidence.support import (
    LateServer,
    StartOnFirstFailure,
    claim,
    fixed_json_handler,
    free_port,
)

REFS = {"http-health": "unhealthy", "alertmanager": "high_error_rate", "prometheus": "high_error_ratio"}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.mark.parametrize("kind", list(REFS))
async def test_a_source_that_comes_up_is_retried_and_confirms(
    http: httpx.AsyncClient, healthy_lab: Lab, kind: str
) -> None:
    healthy_lab.degrade("checkout-api")
    # The lab's own monitor code, served in-process on a port that is closed at first.
    server = LateServer(free_port(), make_handler(Monitor(healthy_lab.root)))
    starter = StartOnFirstFailure(server, delay=0.7)
    logger = logging.getLogger("interlock.evidence")
    logger.addHandler(starter)
    try:
        began = time.monotonic()
        base = f"http://127.0.0.1:{server.port}"
        result = await claim(http, kind, base, REFS[kind], retries=6, backoff=0.5)
    finally:
        logger.removeHandler(starter)
        server.close()
    assert result.fetched and result.supports, result.reason
    assert server.started_at is not None and server.started_at - began >= 0.7
    assert result.attempts >= 2
    assert starter.failed_attempts == result.attempts - 1


@pytest.mark.parametrize("kind", list(REFS))
async def test_a_source_down_for_good_confirms_nothing(http: httpx.AsyncClient, kind: str) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    result = await claim(http, kind, base, REFS[kind], retries=3, backoff=0.05)
    assert not result.fetched and not result.supports
    assert result.reason == "source unreachable after 3 attempts: connection refused"
    assert result.attempts == 3
    assert result.observed["url"].startswith(base)


async def test_every_request_times_out(http: httpx.AsyncClient, silent_port: int) -> None:
    began = time.monotonic()
    base = f"http://127.0.0.1:{silent_port}"
    result = await claim(http, "alertmanager", base, "high_error_rate", retries=1)
    elapsed = time.monotonic() - began
    assert not result.fetched and not result.supports
    assert result.reason == "source unreachable after 1 attempt: timed out after 2s"
    assert 1.9 <= elapsed < 15


@pytest.mark.parametrize("kind", ["alertmanager", "prometheus"])
async def test_a_failing_api_is_retried_then_refused(http: httpx.AsyncClient, kind: str) -> None:
    # A test double for a sick Alertmanager or Prometheus: the lab's monitor never answers 5xx.
    routes = {
        "/api/v2/alerts": (503, {"error": "overloaded"}),
        "/api/v1/query": (503, {"status": "error", "error": "overloaded"}),
    }
    server = LateServer(free_port(), fixed_json_handler(routes))
    server.serve_now()
    try:
        base = f"http://127.0.0.1:{server.port}"
        result = await claim(http, kind, base, REFS[kind], retries=2, backoff=0.05)
    finally:
        server.close()
    assert not result.fetched and not result.supports
    # What the source said is shown, not only its status code.
    assert result.reason == "source unreachable after 2 attempts: HTTP 503: overloaded"


async def test_a_failing_health_check_is_an_answer_not_an_outage(http: httpx.AsyncClient) -> None:
    body = {"service": "checkout-api", "status": "down"}
    server = LateServer(free_port(), fixed_json_handler({"/health/checkout-api": (503, body)}))
    server.serve_now()
    try:
        base = f"http://127.0.0.1:{server.port}"
        result = await claim(http, "http-health", base, "unhealthy", target="checkout")
    finally:
        server.close()
    assert result.fetched and result.supports and result.attempts == 1
    assert result.reason == "checkout-api fails its health check (HTTP 503, status 'down')"

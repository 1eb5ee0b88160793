from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from interlock.lab import Lab


@pytest.fixture(scope="module")
def evidence_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("evidence-lab"))
    lab.create()
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def healthy_lab(evidence_lab: Lab) -> Lab:
    """The module's lab with every service healthy; reset only when a test left one failing,
    because a reset restarts every process."""
    services = evidence_lab.status()["services"].values()
    if any(s["degraded"] or not s["healthy"] for s in services):
        evidence_lab.reset()
    return evidence_lab


@pytest.fixture
def monitor_url(healthy_lab: Lab) -> str:
    url: str = healthy_lab.status()["monitor"]["url"]
    return url


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy from the environment must not intercept loopback calls.
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client

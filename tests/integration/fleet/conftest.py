"""A fleet over real SSH: the lab with checkout-api on web-1..3 and inventory-api on two hosts,
one sshd per host on 127.0.0.1, and a policy and playbook tree of a team's own that name them.

Without sshd the tests skip on a workstation and fail on CI (CI=true): CI must have it
(`scripts/test` installs Debian's openssh-server where apt is available).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio.client import Client

from interlock.keys import ensure_dev_keys
from interlock.lab import Lab
from interlock.lab.ssh import SshFleet, SshUnavailable
from interlock.policy import default_policy_text
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.integration.playbooks.support import PLAYBOOKS

# A secret in the worker's environment: it must reach no playbook run and no artifact.
WORKER_SECRET = f"never-in-artifacts-{uuid.uuid4().hex}"


@dataclass
class Fleet:
    lab: Lab
    ssh: SshFleet
    settings: Settings

    def pids(self, service: str = "checkout-api") -> dict[str, int | None]:
        hosts = self.lab.status()["services"][service]["hosts"]
        return {h: v["pid"] for h, v in hosts.items()}


def fleet_policy(rollout: dict[str, object]) -> str:
    doc = yaml.safe_load(default_policy_text())
    for service, hosts in Lab.fleet().items():
        doc["services"][service]["hosts"] = {"lab": hosts}
    doc["actions"]["restart_service"]["rollout"] = rollout
    doc["actions"]["restart_service"]["timeouts"] = {"execute": "2m", "verify": "1m"}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, temporal_address: str) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    try:
        ssh = SshFleet.start(root / "ssh", Lab.fleet())
    except SshUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must reach real SSH hosts: {exc}")
        pytest.skip(str(exc))
    lab = Lab(root / "lab")
    lab.create(hosts=Lab.fleet())
    lab.start()
    # The team's own playbook tree: Interlock's playbooks with an inventory of SSH hosts.
    playbooks = root / "playbooks"
    shutil.copytree(PLAYBOOKS, playbooks, ignore=shutil.ignore_patterns("artifacts", "__pycache__"))
    shutil.copy(ssh.inventory_file, playbooks / "inventory" / "hosts.yml")
    home = root / "home"
    home.mkdir()
    policy = home / "policy.yaml"
    policy.write_text(fleet_policy({"batch": 1, "max_failed": 0}))
    ensure_dev_keys(policy, home / "keys")
    settings = Settings(
        home=home,
        lab_root=lab.root,
        temporal_address=temporal_address,
        policy_file=policy,
        playbooks_dir=playbooks,
        ssh_key_file=ssh.key_file,
        ssh_known_hosts_file=ssh.known_hosts,
        max_concurrent_playbooks=2,
    )
    try:
        yield Fleet(lab=lab, ssh=ssh, settings=settings)
    finally:
        lab.stop()
        ssh.stop()


@pytest.fixture
def fresh_fleet(fleet: Fleet) -> Fleet:
    """The fleet reset to its starting state, with web-1 degraded: the example proposal's
    evidence (checkout-api unhealthy, its alert firing) is confirmed at the source."""
    fleet.lab.reset()
    fleet.lab.degrade("checkout-api", host="web-1")
    return fleet


@pytest_asyncio.fixture
async def fleet_worker(client: Client, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setenv("INTERLOCK_TEST_WORKER_SECRET", WORKER_SECRET)
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    async with build_worker(client, fleet.settings, task_queue):
        yield task_queue


@pytest_asyncio.fixture
async def worker_for(client: Client) -> AsyncIterator[Any]:
    """Start a worker on settings of the test's own; yields a function that does it."""
    stack: list[Any] = []

    async def start(settings: Settings) -> str:
        task_queue = f"tq-{uuid.uuid4().hex[:12]}"
        worker = build_worker(client, settings, task_queue)
        await worker.__aenter__()
        stack.append(worker)
        return task_queue

    yield start
    for worker in reversed(stack):
        await worker.__aexit__(None, None, None)


def artifact_text(settings: Settings) -> str:
    """Everything ansible-runner left under the artifacts folder, as one string."""
    parts = []
    for path in Path(settings.artifacts_dir).rglob("*"):
        if path.is_file():
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)

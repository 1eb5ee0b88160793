"""The worker is SIGKILLed while a proposal waits for approval, and again mid-playbook.

The worker runs as a real `interlock worker` process (its own process group, so the kill takes
its Ansible children with it). After a restart the proposal completes and the restart happens
exactly once: the lab records every restart with its idempotency key.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.support import approve, final, make_proposal, propose


def start_worker(settings: Settings, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "interlock"), "worker"],
            env=cli_env(settings, task_queue),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def restarts(lab: Lab, proposal_id: str) -> list[dict[str, object]]:
    path = lab.root / "changes.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        r for r in records if r.get("event") == "restart" and str(r.get("key", "")).startswith(proposal_id)
    ]


async def test_worker_killed_while_waiting_then_restarted(
    client: Client, settings: Settings, task_queue: str, alerting_lab: Lab, tmp_path: Path
) -> None:
    before = alerting_lab.status()["services"]["checkout-api"]["pid"]
    proposal = make_proposal(settings, "restart_service")
    first = start_worker(settings, task_queue, tmp_path / "worker.log")
    try:
        state = await propose(client, settings, task_queue, proposal)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
    finally:
        kill(first)
    second = start_worker(settings, task_queue, tmp_path / "worker.log")
    try:
        await approve(client, proposal.proposal_id)
        done = await final(client, proposal.proposal_id)
    finally:
        kill(second)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert alerting_lab.status()["services"]["checkout-api"]["pid"] != before
    assert len(restarts(alerting_lab, proposal.proposal_id)) == 1


async def test_worker_killed_mid_playbook_then_restarted(
    client: Client, settings: Settings, task_queue: str, alerting_lab: Lab, tmp_path: Path
) -> None:
    proposal = make_proposal(settings, "restart_service")
    first = start_worker(settings, task_queue, tmp_path / "worker.log")
    try:
        await propose(client, settings, task_queue, proposal)
        result = await approve(client, proposal.proposal_id)
        assert result.status is ProposalStatus.EXECUTING
        # ansible-playbook is starting up (it takes ~3 s): kill the worker and its children.
        await asyncio.sleep(1.5)
    finally:
        kill(first)
    second = start_worker(settings, task_queue, tmp_path / "worker.log")
    try:
        done = await final(client, proposal.proposal_id)
    finally:
        kill(second)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert len(restarts(alerting_lab, proposal.proposal_id)) == 1
    assert alerting_lab.status()["services"]["checkout-api"]["healthy"]

"""Scale-out against the dev server: two real `interlock worker` processes on one task queue.

They share the proposals; one is SIGKILLed in the middle of an execution playbook and every
proposal still ends completed with each restart done exactly once (the lab's changes.jsonl).
A worker stopped with SIGTERM lets its running playbook finish before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.proposals import DecisionRefused
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.integration.workflows.test_worker_crash import kill, restarts
from tests.support import approve, final, make_proposal, propose, signed

RESTARTED = ("checkout-api", "inventory-api")


def start_worker(settings: Settings, task_queue: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "interlock"), "worker"],
            # One playbook at a time per worker: the rest must wait on the queue for the other.
            env=cli_env(settings, task_queue) | {"INTERLOCK_MAX_CONCURRENT_PLAYBOOKS": "1"} | env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def approve_until_executing(client: Client, settings: Settings, proposal_id: str) -> None:
    """Signed approvals from the roster until the proposal's quorum is met."""
    for approver in ("alice", "bob", "carol", "erin"):
        try:
            result = await signed(client, settings, proposal_id, approver)
        except DecisionRefused:
            continue  # not one whose approval counts for this proposal
        if result.status is not ProposalStatus.AWAITING_APPROVAL:
            assert result.status is ProposalStatus.EXECUTING
            return
    raise AssertionError(f"{proposal_id}: no quorum from the roster")


def parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (pexpect starts ansible-playbook in a session of its own)."""
    tree = parents()
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in tree.items() if parent in frontier]
        found += children
        frontier = children
    return found


def executing_playbooks(worker: subprocess.Popen[bytes]) -> list[str]:
    """Command lines of the forward (not check-mode) ansible-playbook runs under the worker."""
    found = []
    for pid in descendants(worker.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "ansible-playbook" in cmdline and "--check" not in cmdline:
            found.append(cmdline)
    return found


def kill_all(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and everything it started, as a host or container dying would."""
    below = descendants(worker.pid)
    kill(worker)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def wait_for(condition, what: str, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_two_workers_share_proposals_and_survive_a_kill_mid_playbook(
    client: Client, settings: Settings, task_queue: str, fresh_lab: Lab, tmp_path: Path
) -> None:
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [start_worker(settings, task_queue, log) for log in logs]
    killed: subprocess.Popen[bytes] | None = None
    try:
        for service in RESTARTED:  # the incidents the proposals' evidence points at
            fresh_lab.degrade(service)
        proposals = [make_proposal(settings, "restart_service", service=s) for s in RESTARTED]
        proposals.append(make_proposal(settings, "change_access"))  # grants dana payments-oncall
        states = await asyncio.gather(*(propose(client, settings, task_queue, p) for p in proposals))
        assert [s.status for s in states] == [ProposalStatus.AWAITING_APPROVAL] * len(proposals)
        for p in proposals:
            await approve_until_executing(client, settings, p.proposal_id)

        # Kill whichever worker is running an execution playbook first, in the middle of it.
        killed = await wait_for(
            lambda: next((w for w in workers if executing_playbooks(w)), None), "an execution playbook"
        )
        kill_all(killed)
        survivor = next(w for w in workers if w is not killed)
        done = await asyncio.gather(*(final(client, p.proposal_id) for p in proposals))
        assert survivor.poll() is None, "the surviving worker must keep running"
    finally:
        for w in workers:
            if w.poll() is None:
                kill_all(w)

    for p, state in zip(proposals, done, strict=True):
        assert state.status is ProposalStatus.COMPLETED, (p.action, p.target.service, state.reasons)
    for p in proposals[: len(RESTARTED)]:
        assert len(restarts(fresh_lab, p.proposal_id)) == 1, p.target.service
    status = fresh_lab.status()
    assert status["groups"]["payments-oncall"].count("dana") == 1
    assert all(s["healthy"] for s in status["services"].values())
    # Both workers took playbooks: the work was shared, each bounded to one at a time.
    for log in logs:
        assert "running " in log.read_text(), f"{log.name} ran no playbook"


async def test_sigterm_lets_the_running_playbook_finish(
    client: Client, settings: Settings, task_queue: str, fresh_lab: Lab, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(settings, task_queue, log, INTERLOCK_SHUTDOWN_GRACE="120")
    fresh_lab.degrade("checkout-api")
    proposal = make_proposal(settings, "restart_service")
    try:
        await propose(client, settings, task_queue, proposal)
        await approve(client, proposal.proposal_id)
        await wait_for(lambda: executing_playbooks(worker), "the execution playbook")
        worker.send_signal(signal.SIGTERM)  # the worker only; its playbook keeps running
        code = await asyncio.to_thread(worker.wait, 120)
    finally:
        if worker.poll() is None:
            kill(worker)
    assert code == 0
    text = log.read_text()
    assert "stopping: running activities get 120.0s to finish" in text and "worker stopped" in text
    # The execution finished inside the grace period: one attempt, done before the worker left.
    handle = client.get_workflow_handle(proposal.proposal_id)
    history = await handle.fetch_history()
    completed = [e for e in history.events if e.HasField("activity_task_completed_event_attributes")]
    execute_started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert completed and max(execute_started) == 1
    assert len(restarts(fresh_lab, proposal.proposal_id)) == 1

    second = start_worker(settings, task_queue, log)
    try:
        done = await final(client, proposal.proposal_id)
    finally:
        kill(second)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert len(restarts(fresh_lab, proposal.proposal_id)) == 1

"""What every drill checks afterwards: final statuses, changes made once, the audit trail whole."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.benchmarks import awaiting_ids
from interlock.audit import open_store
from interlock.lab import Lab
from interlock.models import DecisionInput, ProposalState, ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import decide, submit, wait_until_final
from interlock.settings import Settings
from tests.support import make_proposal, new_id

T = TypeVar("T")
TRANSIENT = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNKNOWN)


async def retrying(call: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
    """Retry a client call while the server is restarting (unavailable), and only then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except RPCError as exc:
            if exc.status not in TRANSIENT or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def submit_many(
    client: Client, settings: Settings, queue: str, n: int, label: str, services: list[str]
) -> list[str]:
    """n restart proposals, round-robin over `services`."""
    policy = load_policy(settings.effective_policy_file)
    ids = [new_id(label) for _ in range(n)]
    for i, pid in enumerate(ids):
        proposal = make_proposal(
            settings, "restart_service", proposal_id=pid, service=services[i % len(services)]
        )
        await submit(client, proposal, queue, policy)
    return ids


async def wait_awaiting(client: Client, queue: str, ids: list[str], timeout: float | None = None) -> None:
    """Until visibility shows every one of `ids` awaiting approval (each needs a real preview)."""
    pending = set(ids)
    deadline = time.monotonic() + (timeout or max(600.0, 5.0 * len(ids)))
    while pending:
        pending -= await retrying(lambda: awaiting_ids(client, queue))
        if pending:
            assert time.monotonic() < deadline, f"{len(pending)} never reached awaiting_approval"
            await asyncio.sleep(0.5)


async def approve(client: Client, pid: str) -> Any:
    return await retrying(
        lambda: decide(client, pid, "approve", DecisionInput(approver="alice", reason="drill"))
    )


async def reject(client: Client, pid: str) -> Any:
    return await retrying(
        lambda: decide(client, pid, "reject", DecisionInput(approver="alice", reason="drill: not now"))
    )


async def all_final(client: Client, ids: list[str], timeout: float = 600) -> dict[str, ProposalState]:
    async def one(pid: str) -> ProposalState:
        return await retrying(lambda: wait_until_final(client, pid, timeout=timeout), timeout=timeout)

    states = await asyncio.gather(*(one(p) for p in ids))
    return dict(zip(ids, states, strict=True))


def execution_started(settings: Settings, pid: str) -> bool:
    """ansible-runner has begun the execution playbook (its artifact folder exists)."""
    folder = settings.artifacts_dir / pid
    return folder.is_dir() and any(p.name.startswith("execute-") for p in folder.iterdir())


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def lab_changes(lab: Lab) -> list[dict[str, Any]]:
    path: Path = lab.root / "changes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def restarts_by_proposal(lab: Lab, ids: list[str]) -> Counter[str]:
    """How many restarts the lab recorded for each proposal (its change id starts with the id)."""
    counts: Counter[str] = Counter()
    for record in lab_changes(lab):
        if record.get("event") != "restart":
            continue
        for pid in ids:
            if str(record.get("key", "")).startswith(pid.lower()):
                counts[pid] += 1
    return counts


# The audit events each final status leaves, in order (no-op verify data aside).
EXPECTED_KINDS = {
    ProposalStatus.COMPLETED: [
        "submitted",
        "evidence_checked",
        "risk_assessed",
        "preview",
        "decision",
        "execution_started",
        "execution_finished",
        "verification",
        "final",
    ],
    ProposalStatus.REJECTED: [
        "submitted",
        "evidence_checked",
        "risk_assessed",
        "preview",
        "decision",
        "final",
    ],
    ProposalStatus.EXPIRED: ["submitted", "evidence_checked", "risk_assessed", "preview", "final"],
}


def check_audit(settings: Settings, finals: dict[str, ProposalState]) -> None:
    """Every proposal's audit events are there once each, in order, and the chain verifies."""
    store = open_store(settings)
    try:
        report = store.verify()
        assert report.ok, report.problems[:5]
        for pid, state in finals.items():
            events = store.timeline(pid)
            ids = [e.event_id for e in events]
            assert len(ids) == len(set(ids)), f"{pid}: duplicated audit event ids"
            kinds = [e.kind for e in events]
            assert kinds == EXPECTED_KINDS[state.status], f"{pid} ({state.status.value}): {kinds}"
            # The workflow numbers its events 1..n: a gap is a lost event.
            numbers = [int(e.event_id.split("/")[2]) for e in events]
            assert numbers == list(range(1, len(events) + 1)), f"{pid}: audit numbering {numbers}"
            assert events[-1].data["status"] == state.status.value
    finally:
        store.close()


def check_changes(lab: Lab, finals: dict[str, ProposalState]) -> None:
    """Each executed proposal restarted its service exactly once; the others changed nothing."""
    counts = restarts_by_proposal(lab, list(finals))
    for pid, state in finals.items():
        expected = 1 if state.execution is not None else 0
        assert counts[pid] == expected, f"{pid} ({state.status.value}): {counts[pid]} restarts"

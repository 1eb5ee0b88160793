"""Escalation then expiry on the time-skipping test server, with the notifications recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from interlock.audit import open_store
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import get_state, submit, wait_until_settled
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER
from interlock.worker.main import build_worker
from tests.conftest import time_skipping_server_bin
from tests.integration.governance.support import wait_for
from tests.support import final, make_proposal, replays_and_recorded


@pytest_asyncio.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server_bin(), data_converter=DATA_CONVERTER
    ) as env:
        yield env


def _short_clocks(doc: dict[str, Any]) -> None:
    doc["approval_rules"] = {
        "low": {
            "approvals": 1,
            "unsigned_allowed": True,
            "escalate_after": "1h",
            "expire_after": "2h",
            "escalation_group": "security",
        },
        "medium": {"approvals": 1, "unsigned_allowed": True},
        "high": {"approvals": 2, "require_owner": True},
        "critical": {"approvals": 2, "require_group": "security"},
    }


async def notifications(path: Path, kind: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The notifications of `kind` in the file notifier's log, once there is at least one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [n for n in map(json.loads, lines) if n["kind"] == kind]
        if found:
            return found
        assert loop.time() < deadline, f"no {kind} notification in {path}"
        await asyncio.sleep(0.1)


async def test_unanswered_proposal_escalates_at_t1_and_expires_at_t2(
    skipping_env: WorkflowEnvironment,
    governed: Callable[..., Settings],
    task_queue: str,
    fresh_lab: Lab,
) -> None:
    s = governed(_short_clocks)
    log = s.home_dir / "notifications.jsonl"
    before = fresh_lab.status()["services"]
    client = skipping_env.client
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        await submit(
            client,
            proposal,
            task_queue,
            load_policy(s.effective_policy_file),
            search_attributes=False,
            # The time-skipping test server has one namespace: claims stay in it.
            claims_namespace=client.namespace,
        )
        state = await wait_until_settled(client, proposal.proposal_id, timeout=120)
        assert state.status is ProposalStatus.AWAITING_APPROVAL and not state.escalated
        [asked] = await notifications(log, "awaiting_approval")
        assert asked["proposal_id"] == proposal.proposal_id

        await skipping_env.sleep(timedelta(minutes=55))
        assert not (await get_state(client, proposal.proposal_id)).escalated
        await skipping_env.sleep(timedelta(minutes=10))
        state = await wait_for(client, proposal.proposal_id, lambda st: st.escalated)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        assert any(
            e.note == "escalated to security: still needs 1 more approval(s) (0/1)" for e in state.timeline
        )
        [escalation] = await notifications(log, "escalation")
        assert escalation["group"] == "security"
        assert escalation["text"].startswith("Escalated to security: restart_service on checkout-api")

        await skipping_env.sleep(timedelta(hours=1))
        done = await final(client, proposal.proposal_id)
        await replays_and_recorded(client, proposal.proposal_id, "escalated_then_expired")
        [outcome] = await notifications(log, "outcome")

    assert done.status is ProposalStatus.EXPIRED
    assert done.execution is None and done.decisions == []
    assert outcome["status"] == "expired"
    assert fresh_lab.status()["services"] == before
    store = open_store(s)
    try:
        kinds = [e.kind for e in store.timeline(proposal.proposal_id)]
    finally:
        store.close()
    assert "escalated" in kinds and kinds[-1] == "final"

"""Freeze windows: a change in a freeze waits for an extra approval from the emergency group."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import ProposalStatus, RiskTier
from interlock.proposals import get_state
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.support import final, make_proposal, propose, signed


def _freeze_now(doc: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    doc["freezes"] = [
        {
            "name": "quarter-end",
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
            "environments": ["lab"],
            "actions": ["change_access"],
        }
    ]


async def test_freeze_holds_a_high_change_until_an_emergency_approval(
    client: Client, governed: Callable[..., Settings], task_queue: str, fresh_lab: Lab
) -> None:
    s = governed(_freeze_now)
    proposal = make_proposal(s, "change_access")
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        assert state.risk is not None and state.risk.tier is RiskTier.HIGH
        assert state.freezes == ["quarter-end"]

        # The quorum a high change needs outside a freeze: two signed, one from the owner.
        await signed(client, s, proposal.proposal_id, "carol")
        held = await signed(client, s, proposal.proposal_id, "bob")
        assert held.status is ProposalStatus.AWAITING_APPROVAL
        state = await get_state(client, proposal.proposal_id)
        assert state.waiting_for == "an approval from emergency (freeze in force)"
        assert state.execution is None
        assert "dana" not in fresh_lab.status()["groups"]["payments-oncall"]

        released = await signed(client, s, proposal.proposal_id, "erin")  # emergency group
        assert released.status is ProposalStatus.EXECUTING
        done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert [d.approver for d in done.decisions] == ["carol", "bob", "erin"]
    assert "dana" in fresh_lab.status()["groups"]["payments-oncall"]

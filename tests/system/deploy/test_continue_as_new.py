"""A long approval wait continues as new before history grows large, carrying the gate's state.

The history limit is the worker's INTERLOCK_HISTORY_EVENT_LIMIT, set small here; signals (pauses
of other services) grow the history while a high-risk proposal waits for its second approval.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import DecisionInput, Pause, PauseScope, ProposalStatus, RiskTier
from interlock.proposals import DecisionRefused, decide, get_state, sign_decision
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.support import final, make_proposal, propose, replays_and_recorded

LIMIT = 120


async def test_decisions_and_nonces_survive_continue_as_new(
    client: Client, settings: Settings, task_queue: str, checkout_degraded: Lab
) -> None:
    small = settings.model_copy(update={"history_event_limit": LIMIT})
    proposal = make_proposal(settings, "change_access")
    async with build_worker(client, small, task_queue):
        state = await propose(client, settings, task_queue, proposal)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        assert state.risk is not None and state.risk.tier is RiskTier.HIGH  # two approvals needed
        handle = client.get_workflow_handle(proposal.proposal_id)
        first_run = (await handle.describe()).run_id

        token = await sign_decision(client, settings.keys_dir, proposal.proposal_id, "approve", "bob", "ok")
        first = await decide(client, proposal.proposal_id, "approve", DecisionInput(token=token))
        assert first.status is ProposalStatus.AWAITING_APPROVAL

        # Grow the history while waiting: pauses of another service (they do not hold this one).
        other = PauseScope(service="storefront")
        signals = 0
        while (await handle.describe()).run_id == first_run:
            pause = Pause(scope=other, reason=f"noise {signals}", by="ops", at=datetime.now(UTC))
            await handle.signal("pause", pause)
            await handle.signal("resume", other)
            signals += 2
            assert signals < LIMIT, "the workflow never continued as new"
            await asyncio.sleep(0)
        history = await client.get_workflow_handle(proposal.proposal_id, run_id=first_run).fetch_history()
        # It ran up to the limit, then stopped growing: signals arriving while the workflow task
        # that continues as new runs add a few events more, never an unbounded number.
        assert LIMIT <= len(history.events) < LIMIT + 40
        old = await client.get_workflow_handle(proposal.proposal_id, run_id=first_run).describe()
        assert old.raw_description.workflow_execution_info.status == (
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW
        )

        carried = await get_state(client, proposal.proposal_id)
        assert carried.status is ProposalStatus.AWAITING_APPROVAL
        assert [(d.approver, d.signed) for d in carried.decisions] == [("bob", True)]
        assert carried.plan_hash == state.plan_hash
        assert any("continued as run 2" in (t.note or "") for t in carried.timeline)
        # The used token's nonce travelled: replaying it into the new run is refused.
        with pytest.raises(DecisionRefused, match="already used"):
            await decide(client, proposal.proposal_id, "approve", DecisionInput(token=token))

        second = await sign_decision(
            client, settings.keys_dir, proposal.proposal_id, "approve", "alice", "ok"
        )
        result = await decide(client, proposal.proposal_id, "approve", DecisionInput(token=second))
        assert result.status is ProposalStatus.EXECUTING
        done = await final(client, proposal.proposal_id)
        # Both runs replay: the first continued as new, the second re-derived and re-judged.
        await replays_and_recorded(client, proposal.proposal_id, "continued_first_run", first_run)
        await replays_and_recorded(client, proposal.proposal_id, "continued_second_run")
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert [d.approver for d in done.decisions] == ["bob", "alice"]

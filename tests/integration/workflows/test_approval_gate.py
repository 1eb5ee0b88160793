"""The approval gate: each validator refusal, and duplicate submissions."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import DecisionInput, ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import (
    DecisionRefused,
    ProposalConflict,
    decide,
    get_state,
    submit,
    wait_until_settled,
)
from interlock.settings import Settings
from tests.support import final, make_proposal, propose, update_events


@pytest.mark.parametrize(
    ("decision", "approver", "reason", "expected"),
    [
        ("approve", "mallory", "ok", "not an approver in the policy's roster"),
        ("approve", "triage-bot", "ok", "separation of duties"),
        ("reject", "alice", "   ", "a rejection needs a reason"),
    ],
)
async def test_validator_refuses_without_writing_history(
    client: Client,
    settings: Settings,
    worker: str,
    checkout_degraded: Lab,
    decision: str,
    approver: str,
    reason: str,
    expected: str,
) -> None:
    proposal = make_proposal(settings, "restart_service")
    await propose(client, settings, worker, proposal)
    with pytest.raises(DecisionRefused, match=expected):
        await decide(client, proposal.proposal_id, decision, DecisionInput(approver=approver, reason=reason))

    assert await update_events(client, proposal.proposal_id) == 0
    state = await get_state(client, proposal.proposal_id)
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    assert state.decisions == []
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")


async def test_decision_on_a_final_proposal_is_refused(
    client: Client, settings: Settings, worker: str, checkout_degraded: Lab
) -> None:
    proposal = make_proposal(settings, "restart_service")
    await propose(client, settings, worker, proposal)
    await decide(client, proposal.proposal_id, "reject", DecisionInput(approver="bob", reason="no"))
    await final(client, proposal.proposal_id)
    with pytest.raises(DecisionRefused):
        await decide(client, proposal.proposal_id, "approve", DecisionInput(approver="alice", reason="ok"))


async def test_decision_while_checks_run_is_refused(
    client: Client, settings: Settings, worker: str, checkout_degraded: Lab
) -> None:
    proposal = make_proposal(settings, "restart_service")
    await submit(client, proposal, worker, load_policy(settings.effective_policy_file))
    with pytest.raises(DecisionRefused, match="not awaiting_approval"):
        await decide(client, proposal.proposal_id, "approve", DecisionInput(approver="alice", reason="ok"))
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")


async def test_duplicate_submission_gives_one_workflow(
    client: Client, settings: Settings, worker: str, checkout_degraded: Lab
) -> None:
    policy = load_policy(settings.effective_policy_file)
    proposal = make_proposal(settings, "restart_service")
    first = await submit(client, proposal, worker, policy)
    second = await submit(client, proposal, worker, policy)
    assert first.created and not second.created
    assert first.run_id == second.run_id

    history = await client.get_workflow_handle(proposal.proposal_id).fetch_history()
    assert sum(e.HasField("workflow_execution_started_event_attributes") for e in history.events) == 1

    # The same id for a different proposal is a conflict, not a silent merge.
    other = make_proposal(
        settings,
        "rollback_deployment",
        proposal_id=proposal.proposal_id,
        parameters={"release": "v1"},
    )
    with pytest.raises(ProposalConflict):
        await submit(client, other, worker, policy)

    # Resubmitting after the proposal is final returns it; nothing runs again.
    await wait_until_settled(client, proposal.proposal_id)
    await decide(client, proposal.proposal_id, "reject", DecisionInput(approver="bob", reason="no"))
    await final(client, proposal.proposal_id)
    again = await submit(client, proposal, worker, policy)
    assert not again.created and again.run_id == first.run_id

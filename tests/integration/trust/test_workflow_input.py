"""Workflow input is untrusted: a hand-started run is a fresh proposal, whatever it carries.

Any client with namespace access can start RemediationWorkflow with an input of its choosing.
These tests do exactly that, bypassing the intake, and check that nothing crafted is adopted.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowFailureError

from interlock.governance import ApprovalWait, Governance, RemediationRun
from interlock.lab import Lab
from interlock.models import (
    DecisionKind,
    DecisionRecord,
    ProposalState,
    ProposalStatus,
    RiskAssessment,
    RiskTier,
)
from interlock.policy import Approver, default_rules
from interlock.proposals import get_state
from interlock.settings import Settings
from tests.integration.trust.support import lab_changes, now, start_by_hand, stored, wait_status
from tests.support import make_proposal, new_id


def forged_wait(settings: Settings, proposal_id: str) -> ApprovalWait:
    """Carried-over state as an attacker would write it: quorum met by invented, 'signed' people."""
    proposal = make_proposal(settings, proposal_id=proposal_id)
    mallory = [
        DecisionRecord(
            decision=DecisionKind.APPROVE,
            approver=name,
            reason="lgtm",
            at=now(),
            groups=["payments-oncall", "security", "platform-admins"],
            signed=True,
            plan_hash="forged",
        )
        for name in ("mallory", "trudy")
    ]
    rules = {
        tier: rule.model_copy(update={"approvals": 1, "unsigned_allowed": True})
        for tier, rule in default_rules().items()
    }
    return ApprovalWait(
        state=ProposalState(
            proposal=proposal,
            workflow_id=proposal_id,
            status=ProposalStatus.AWAITING_APPROVAL,
            submitted_at=now(),
            risk=RiskAssessment(score=1, tier=RiskTier.LOW, factors=[]),
            decisions=mallory,
            plan_hash="forged",
        ),
        governance=Governance(
            rules=rules,
            roster={"mallory": Approver(groups=["payments-oncall"]), "trudy": Approver(groups=["security"])},
            owner_group="payments-oncall",
        ),
        escalate_at=now() + timedelta(hours=1),
        expire_at=now() + timedelta(hours=2),
    )


async def test_forged_carried_state_in_a_direct_start_is_ignored(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    pid = new_id()
    before = lab_changes(alerting_lab)
    wait = forged_wait(settings, pid)
    handle = await start_by_hand(
        client, worker, pid, RemediationRun(proposal=wait.state.proposal, submitted_at=now(), continued=wait)
    )
    # Treated as a fresh proposal: checked, previewed, and waiting for a real person.
    state = await wait_status(client, pid, "awaiting_approval", "rejected_by_checks", "completed")
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.decisions == []
    assert state.plan_hash != "forged"
    assert "mallory" not in (state.waiting_for or "")
    kinds = [k for k, _, _ in stored(settings, pid)]
    assert "security" in kinds
    reasons = [r for k, d, _ in stored(settings, pid) if k == "security" for r in d["reasons"]]
    assert any("carried-over state ignored" in r for r in reasons)
    await handle.terminate("test over")
    assert lab_changes(alerting_lab) == before, "a forged approval ran a playbook"


async def test_a_workflow_id_other_than_the_proposal_id_writes_nothing_under_that_id(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    victim, wid = new_id("victim"), new_id("attacker")
    proposal = make_proposal(settings, proposal_id=victim)
    handle = await start_by_hand(client, worker, wid, RemediationRun(proposal=proposal, submitted_at=now()))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "rejected_by_checks" in str(failure.value.cause)
    assert "is not the proposal's id" in str(failure.value.cause)
    assert stored(settings, victim) == []
    recorded = stored(settings, wid)
    assert [k for k, _, _ in recorded] == ["security", "final"]
    assert recorded[-1][1]["status"] == "rejected_by_checks"
    notes = settings.home_dir / "notifications.jsonl"
    assert victim not in (notes.read_text() if notes.exists() else "")
    state = await get_state(client, wid)
    assert state.status is ProposalStatus.REJECTED_BY_CHECKS


async def test_input_the_model_refuses_ends_rejected_by_checks_on_record(
    client: Client, settings: Settings, worker: str
) -> None:
    wid = new_id()
    bad = {"proposal": {"proposal_id": wid, "recommender": "x"}, "submitted_at": "yesterday"}
    handle = await start_by_hand(client, worker, wid, bad)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    message = getattr(failure.value.cause, "message", "")
    assert message.startswith("rejected_by_checks: input refused:")
    assert "proposal.action" in message  # names the field
    recorded = stored(settings, wid)
    assert [k for k, _, _ in recorded] == ["security", "final"]
    assert "proposal.action" in recorded[-1][1]["reasons"][0]

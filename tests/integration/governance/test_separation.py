"""Separation of duties and quorum: who may decide, and when the decisions are enough."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import Client

from interlock.gate import quorum
from interlock.governance import Governance
from interlock.lab import Lab
from interlock.models import DecisionInput, DecisionKind, DecisionRecord, ProposalStatus, RiskTier
from interlock.policy import load_policy
from interlock.proposals import DecisionRefused, decide, get_state
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.support import approve, final, make_proposal, propose, signed, update_events


async def test_recommender_cannot_approve_its_own_proposal(
    client: Client, settings: Settings, worker: str, fresh_lab: Lab
) -> None:
    # alice is an approver in the roster and, here, also the recommender.
    proposal = make_proposal(settings, "restart_service", recommender="alice")
    state = await propose(client, settings, worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL

    for attempt in (
        DecisionInput(approver="alice", reason="mine, so fine"),
        DecisionInput(token=await _token(client, settings, proposal.proposal_id, "alice")),
    ):
        with pytest.raises(DecisionRefused, match="separation of duties"):
            await decide(client, proposal.proposal_id, "approve", attempt)
    assert await update_events(client, proposal.proposal_id) == 0
    assert (await get_state(client, proposal.proposal_id)).decisions == []

    # Anyone else in the roster may.
    result = await approve(client, proposal.proposal_id, approver="bob")
    assert result.status is ProposalStatus.EXECUTING
    assert (await final(client, proposal.proposal_id)).status is ProposalStatus.COMPLETED


async def test_the_same_approver_counts_once(
    client: Client, settings: Settings, worker: str, lab: Lab
) -> None:
    proposal = make_proposal(settings, "change_access")  # high: two approvals
    await propose(client, settings, worker, proposal)
    first = await signed(client, settings, proposal.proposal_id, "bob")
    assert first.status is ProposalStatus.AWAITING_APPROVAL

    with pytest.raises(DecisionRefused, match="a person counts once"):
        await signed(client, settings, proposal.proposal_id, "bob", reason="really sure")
    state = await get_state(client, proposal.proposal_id)
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    assert [d.approver for d in state.decisions] == ["bob"]
    assert state.waiting_for is not None and "1 more approval(s) (1/2)" in state.waiting_for
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")

    # The quorum rule itself, had a duplicate reached it: two records of bob are one approval.
    gov = _governance(settings)
    bob = _record("bob", ["sre", "payments"])
    assert quorum([bob, bob], gov, RiskTier.HIGH, frozen=False) == (
        False,
        "1 more approval(s) (1/2)",
    )
    assert quorum([bob, _record("carol", ["security"])], gov, RiskTier.HIGH, frozen=False)[0]


def _payments_decide(doc: dict[str, Any]) -> None:
    doc["approval_rules"] = {
        "low": {"approvals": 1, "groups": ["payments"], "unsigned_allowed": True},
        "medium": {"approvals": 1, "groups": ["payments"], "unsigned_allowed": True},
        "high": {"approvals": 2, "require_owner": True},
        "critical": {"approvals": 2, "require_group": "security"},
    }


async def test_approver_outside_the_tiers_groups_is_refused_by_the_validator(
    client: Client, governed: Callable[..., Settings], task_queue: str, lab: Lab
) -> None:
    s = governed(_payments_decide)
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        assert state.risk is not None and state.risk.tier is RiskTier.LOW
        for decision in ("approve", "reject"):
            with pytest.raises(DecisionRefused, match=r"'alice' \(groups: sre\) is outside the groups"):
                await decide(
                    client,
                    proposal.proposal_id,
                    decision,
                    DecisionInput(approver="alice", reason="on call"),
                )
        # Refused before anything was written: no Update event, no decision.
        assert await update_events(client, proposal.proposal_id) == 0
        state = await get_state(client, proposal.proposal_id)
        assert state.status is ProposalStatus.AWAITING_APPROVAL and state.decisions == []
        # bob is in payments: his rejection counts.
        result = await decide(
            client, proposal.proposal_id, "reject", DecisionInput(approver="bob", reason="not now")
        )
        assert result.status is ProposalStatus.REJECTED
        assert await update_events(client, proposal.proposal_id) == 2  # accepted + completed
        await final(client, proposal.proposal_id)


async def test_high_needs_two_approvers_one_from_the_owning_group(
    client: Client, settings: Settings, worker: str, fresh_lab: Lab
) -> None:
    assert "dana" not in fresh_lab.status()["groups"]["payments-oncall"]
    proposal = make_proposal(settings, "change_access")
    state = await propose(client, settings, worker, proposal)
    assert state.risk is not None and state.risk.tier is RiskTier.HIGH
    assert state.service is not None and state.service.owner == "payments"

    first = await signed(client, settings, proposal.proposal_id, "carol")  # security
    assert first.status is ProposalStatus.AWAITING_APPROVAL
    second = await signed(client, settings, proposal.proposal_id, "alice")  # sre
    assert second.status is ProposalStatus.AWAITING_APPROVAL, "two approvers but no owner"
    state = await get_state(client, proposal.proposal_id)
    assert state.waiting_for == "an approval from the owning group payments"
    assert state.execution is None
    assert "dana" not in fresh_lab.status()["groups"]["payments-oncall"]

    third = await signed(client, settings, proposal.proposal_id, "bob")  # payments: the owner
    assert third.status is ProposalStatus.EXECUTING
    done = await final(client, proposal.proposal_id)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert [(d.approver, d.signed) for d in done.decisions] == [
        ("carol", True),
        ("alice", True),
        ("bob", True),
    ]
    assert "dana" in fresh_lab.status()["groups"]["payments-oncall"]


async def test_unsigned_approval_is_refused_for_high_and_marked_for_medium(
    client: Client, settings: Settings, worker: str, lab: Lab
) -> None:
    high = make_proposal(settings, "change_access")
    await propose(client, settings, worker, high)
    with pytest.raises(DecisionRefused, match="unsigned approvals are not accepted for high risk"):
        await approve(client, high.proposal_id, approver="bob")
    assert await update_events(client, high.proposal_id) == 0
    assert (await get_state(client, high.proposal_id)).decisions == []
    await client.get_workflow_handle(high.proposal_id).terminate("test done")

    # Medium allows unsigned approvals by default, and every view says they are unsigned.
    medium = make_proposal(settings, "rollback_deployment", parameters={"release": "v1"})
    await propose(client, settings, worker, medium)
    await decide(
        client, medium.proposal_id, "reject", DecisionInput(approver="bob", reason="typed in the UI")
    )
    done = await final(client, medium.proposal_id)
    assert [(d.approver, d.signed) for d in done.decisions] == [("bob", False)]
    from interlock.presentation import approval_details

    assert "reject by bob (UNSIGNED): typed in the UI" in approval_details(done)


async def _token(client: Client, settings: Settings, proposal_id: str, approver: str) -> str:
    from interlock.proposals import sign_decision

    return await sign_decision(client, settings.keys_dir, proposal_id, "approve", approver, "ok")


def _governance(settings: Settings) -> Governance:
    policy = load_policy(settings.effective_policy_file)
    return Governance.from_policy(
        policy, "change_access", "lab", "checkout-api", "triage-bot", datetime.now(UTC)
    )


def _record(approver: str, groups: list[str]) -> DecisionRecord:
    return DecisionRecord(
        decision=DecisionKind.APPROVE,
        approver=approver,
        reason="ok",
        at=datetime.now(UTC),
        groups=groups,
        signed=True,
    )

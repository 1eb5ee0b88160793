"""Modes: `auto` lets the policy approve low-risk changes itself (never high), `shadow` runs
nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from interlock.governance import AUTO_APPROVER
from interlock.lab import Lab
from interlock.models import ProposalStatus, RiskTier
from interlock.policy import PolicyError, default_policy_text, parse_policy
from interlock.proposals import DecisionRefused
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.support import approve, final, make_proposal, propose


def _auto_for_low(doc: dict[str, Any]) -> None:
    # The walk-through's edit: checkout-api restarts (low risk in the default policy) in auto.
    doc["modes"] = [
        {
            "action": "restart_service",
            "service": "checkout-api",
            "mode": "auto",
            "max_tier": "low",
            "min_confidence": 0.8,
        },
        {"action": "change_access", "mode": "auto", "max_tier": "medium", "min_confidence": 0.5},
    ]


async def test_auto_mode_approves_low_risk_without_a_person(
    client: Client, governed: Callable[..., Settings], task_queue: str, fresh_lab: Lab
) -> None:
    s = governed(_auto_for_low)
    before = fresh_lab.status()["services"]["checkout-api"]["pid"]
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        await propose(client, s, task_queue, proposal)
        done = await final(client, proposal.proposal_id)

    assert done.risk is not None and done.risk.tier is RiskTier.LOW
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert done.mode == "auto"
    [decision] = done.decisions
    assert decision.approver == AUTO_APPROVER and not decision.human
    assert decision.plan_hash == done.plan_hash
    assert fresh_lab.status()["services"]["checkout-api"]["pid"] != before


async def test_auto_mode_never_approves_high_risk(
    client: Client, governed: Callable[..., Settings], task_queue: str, lab: Lab
) -> None:
    s = governed(_auto_for_low)
    proposal = make_proposal(s, "change_access")  # high, under a rule that says auto
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        await client.get_workflow_handle(proposal.proposal_id).terminate("test done")

    assert state.risk is not None and state.risk.tier is RiskTier.HIGH
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    assert state.mode == "auto (declined: needs a person)"
    assert state.decisions == [] and state.execution is None

    # And no policy may even say so.
    doc = yaml.safe_load(default_policy_text())
    doc["modes"] = [{"action": "change_access", "mode": "auto", "max_tier": "high"}]
    with pytest.raises(PolicyError) as refused:
        parse_policy(yaml.safe_dump(doc))
    assert refused.value.errors == ["modes.0: auto mode may never approve high or critical changes"]


async def test_shadow_mode_assesses_and_runs_nothing(
    client: Client, governed: Callable[..., Settings], task_queue: str, fresh_lab: Lab
) -> None:
    def shadow(doc: dict[str, Any]) -> None:
        doc["modes"] = [{"action": "restart_service", "mode": "shadow"}]

    s = governed(shadow)
    before = fresh_lab.status()
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        assert state.status is ProposalStatus.SHADOWED
        with pytest.raises(DecisionRefused):
            await approve(client, proposal.proposal_id)
        done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.SHADOWED
    assert done.risk is not None and done.preview is not None  # assessed and recorded
    assert done.decisions == [] and done.execution is None
    assert done.reasons == ["shadow mode: assessed and recorded, not run"]
    assert fresh_lab.status()["services"] == before["services"]

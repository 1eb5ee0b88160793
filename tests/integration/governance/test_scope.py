"""Recommender scopes: a proposal outside its recommender's scope or above its highest tier is
refused with a clear reason, nothing is previewed or run, and a security event is recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from interlock.audit import open_store
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.support import final, make_proposal, propose


def _scoped(doc: dict[str, Any]) -> None:
    doc["recommenders"] = {
        "triage-bot": {
            "actions": ["restart_service", "change_access"],
            "services": ["checkout-api"],
            "environments": ["lab"],
            "max_tier": "medium",
        }
    }


async def test_proposal_outside_the_recommenders_scope_is_refused_and_recorded(
    client: Client, governed: Callable[..., Settings], task_queue: str, lab: Lab
) -> None:
    s = governed(_scoped)
    before = lab.status()["services"]
    wrong_action = make_proposal(s, "rollback_deployment", parameters={"release": "v1"})
    wrong_service = make_proposal(s, "restart_service", service="inventory-api")
    unknown_bot = make_proposal(s, "restart_service", recommender="rogue-bot")
    too_risky = make_proposal(s, "change_access")  # high; triage-bot may propose up to medium
    in_scope = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        for p in (wrong_action, wrong_service, unknown_bot, too_risky, in_scope):
            await propose(client, s, task_queue, p)
        states = {
            p.proposal_id: await final(client, p.proposal_id)
            for p in (wrong_action, wrong_service, unknown_bot, too_risky)
        }
        in_scope_state = await propose(client, s, task_queue, in_scope)
        await client.get_workflow_handle(in_scope.proposal_id).terminate("test done")

    expected = {
        wrong_action.proposal_id: "scope: triage-bot may not propose rollback_deployment",
        wrong_service.proposal_id: "scope: triage-bot may not propose changes to inventory-api",
        unknown_bot.proposal_id: "recommender: 'rogue-bot' has no scope in the policy",
        too_risky.proposal_id: "security: triage-bot may propose up to medium risk; this is high",
    }
    for pid, reason in expected.items():
        state = states[pid]
        assert state.status is ProposalStatus.REJECTED_BY_CHECKS
        assert reason in state.reasons, state.reasons
        assert state.execution is None and state.decisions == []
    # Out of scope is refused before any playbook runs, even in check mode.
    for p in (wrong_action, wrong_service, unknown_bot):
        assert states[p.proposal_id].preview is None
        assert states[p.proposal_id].reasons[0] == "security: outside the recommender's scope"
    assert in_scope_state.status is ProposalStatus.AWAITING_APPROVAL
    assert lab.status()["services"] == before

    store = open_store(s)
    try:
        security = {e.proposal_id for e in store.events() if e.kind == "security"}
    finally:
        store.close()
    assert {p.proposal_id for p in (wrong_action, wrong_service, unknown_bot, too_risky)} <= security
    assert in_scope.proposal_id not in security

"""Earned autonomy through the real workflow: a shadow pilot's clean record promotes the model
version to `approve` once, the next proposal runs in approve mode, and the change is notified."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from interlock.audit import open_store
from interlock.audit.metrics import mode_changes
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.integration.governance.conftest import governed
from tests.support import final, make_proposal, propose

__all__ = ["governed"]


def _pilot(doc: dict[str, Any]) -> None:
    doc["graduation"] = [
        {
            "action": "restart_service",
            "window": "30d",
            "promote": {"approve": {"min_proposals": 1, "max_false_recommendation_rate": 0.0}},
            "demote": {"min_proposals": 1, "max_rollback_rate": 0.0},
        }
    ]


async def test_a_shadow_pilot_graduates_and_the_next_proposal_runs_in_approve(
    client: Client, governed: Callable[..., Settings], task_queue: str, alerting_lab: Lab
) -> None:
    s = governed(_pilot)
    first, second, other_model = (
        make_proposal(s, "restart_service").model_copy(update={"model_version": v})
        for v in ("demo-7", "demo-7", "demo-8")
    )
    before = alerting_lab.status()["services"]
    async with build_worker(client, s, task_queue):
        await propose(client, s, task_queue, first)
        done = await final(client, first.proposal_id)
        assert done.status is ProposalStatus.SHADOWED and done.mode == "shadow"

        nxt = await propose(client, s, task_queue, second)
        assert nxt.mode == "approve" and nxt.status is ProposalStatus.AWAITING_APPROVAL
        await client.get_workflow_handle(second.proposal_id).terminate("test done")

        # A new model version of the same recommender starts again in shadow.
        fresh = await propose(client, s, task_queue, other_model)
        assert fresh.status is ProposalStatus.SHADOWED and fresh.mode == "shadow"
    assert alerting_lab.status()["services"] == before  # nothing ran

    with open_store(s) as store:
        [change] = mode_changes(store, first.recommender, "demo-7")
    assert change["proposal_id"] == first.proposal_id
    assert (change["data"]["from"], change["data"]["to"], change["data"]["direction"]) == (
        "shadow",
        "approve",
        "promoted",
    )
    assert change["data"]["figures"]["proposals"] == 1
    notes = [json.loads(line) for line in (s.home_dir / "notifications.jsonl").read_text().splitlines()]
    # demo-8's own first shadow proposal may earn it a promotion too: only demo-7's is asserted.
    [note] = [n for n in notes if n["kind"] == "mode_changed" and " demo-7 " in n["text"]]
    assert "promoted from shadow to approve" in note["text"]

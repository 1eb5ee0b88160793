"""Real proposals on the dev server and the lab write one audit event per state change, on SQLite
and on PostgreSQL; the figures `interlock metrics` gives for them are the ones worked out by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import Client

from interlock.audit import open_store
from interlock.audit.metrics import compute_metrics
from interlock.lab import Lab
from interlock.models import DecisionInput, Proposal, ProposalState, ProposalStatus
from interlock.proposals import decide
from interlock.settings import Settings
from tests.audit.conftest import Backend
from tests.audit.workflow_support import audit_settings
from tests.support import approve, final, make_proposal, propose
from worker.main import build_worker

BEFORE_DECISION = ["submitted", "evidence_checked", "risk_assessed", "preview"]
EXECUTION = ["execution_started", "execution_finished", "verification"]
# change_access is high risk: escalated after 2 s, expired after 6 s with nobody deciding.
SHORT_CLOCKS = {
    "approval_rules": {
        "low": {"approvals": 1, "unsigned_allowed": True},
        "medium": {"approvals": 1, "unsigned_allowed": True},
        "high": {"approvals": 2, "require_owner": True, "escalate_after": "2s", "expire_after": "1h"},
        "critical": {"approvals": 2, "require_group": "security"},
    },
}


async def test_one_event_per_state_change(
    client: Client, settings: Settings, backend: Backend, fresh_lab: Lab, tmp_path: Path
) -> None:
    s = audit_settings(settings, tmp_path / "home", backend, SHORT_CLOCKS)
    policy = (s.home_dir / "policy.yaml").read_text()
    (s.home_dir / "policy.yaml").write_text(policy.replace("approval_timeout: 8h", "approval_timeout: 6s", 1))
    # Each on a service of its own, so all four run at once.
    approved = make_proposal(s, "restart_service", service="inventory-api")
    rejected = make_proposal(s, "rollback_deployment", parameters={"release": "v1"})
    expiring = make_proposal(s, "change_access")
    rolled_back = make_proposal(s, "rollback_deployment", parameters={"release": "v0"})
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"

    async def decided(proposal: Proposal, decision: str | None) -> ProposalState:
        await propose(client, s, task_queue, proposal)
        if decision == "approve":
            await approve(client, proposal.proposal_id)
        elif decision == "reject":
            await decide(
                client, proposal.proposal_id, "reject", DecisionInput(approver="bob", reason="not v1")
            )
        return await final(client, proposal.proposal_id)

    async with build_worker(client, s, task_queue):
        states = await asyncio.gather(
            decided(approved, "approve"),
            decided(rejected, "reject"),
            decided(expiring, None),
            decided(rolled_back, "approve"),
        )
    done = {state.proposal.proposal_id: state for state in states}

    expected = {
        approved.proposal_id: (
            ProposalStatus.COMPLETED,
            [*BEFORE_DECISION, "decision", *EXECUTION, "final"],
        ),
        rejected.proposal_id: (ProposalStatus.REJECTED, [*BEFORE_DECISION, "decision", "final"]),
        expiring.proposal_id: (ProposalStatus.EXPIRED, [*BEFORE_DECISION, "escalated", "final"]),
        rolled_back.proposal_id: (
            ProposalStatus.ROLLED_BACK,
            [*BEFORE_DECISION, "decision", *EXECUTION, "rollback", "final"],
        ),
    }
    with open_store(s) as store:
        for proposal_id, (status, kinds) in expected.items():
            assert done[proposal_id].status is status, done[proposal_id].reasons
            events = store.timeline(proposal_id)
            assert [e.kind for e in events] == kinds, proposal_id
            assert events[-1].status == status.value
            assert len({e.event_id for e in events}) == len(events)
        decisions = {e.proposal_id: e.data for e in store.events() if e.kind == "decision"}
        assert decisions[approved.proposal_id]["approver"] == "alice"
        assert decisions[approved.proposal_id]["human"] is True
        assert decisions[rejected.proposal_id]["decision"] == "reject"
        assert decisions[rejected.proposal_id]["reason"] == "not v1"
        finished = next(e for e in store.timeline(approved.proposal_id) if e.kind == "execution_finished")
        assert finished.data["ok"] and finished.data["tasks"], "per-task results are recorded"
        assert store.verify().ok

        m = compute_metrics(store)["overall"]
    assert (m["proposals"], m["finals"], m["completed"], m["backlog"]) == (4, 4, 1, 0)
    # Human decisions: alice approves twice, bob rejects once.
    assert (m["human_decisions"], m["human_rejections"]) == (3, 1)
    assert m["override_ratio"] == 1 / 3
    # rejected and rolled back, of four finals.
    assert m["false_recommendation_ratio"] == 0.5
    assert (m["escalated"], m["escalation_ratio"]) == (1, 0.25)
    assert m["audit_exceptions"] == 0

"""Real proposals on the dev server and the lab write one audit event per state change, on SQLite
and on PostgreSQL; the figures `interlock metrics` gives for them are the ones worked out by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from interlock.audit import open_store
from interlock.audit.metrics import compute_metrics
from interlock.lab import Lab
from interlock.models import DecisionInput, Proposal, ProposalState, ProposalStatus
from interlock.proposals import decide
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.integration.audit.conftest import PG_URL, Backend, with_options
from tests.integration.audit.workflow_support import audit_settings
from tests.support import approve, final, make_proposal, propose

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


def pg_settings(settings: Settings, tmp_path: Path, pg_schema: str) -> Settings:
    # PostgreSQL here; the workflow writing to SQLite is covered by test_auditor_tools.
    backend = Backend("postgresql", with_options(PG_URL, search_path=pg_schema), admin=None)  # type: ignore[arg-type]
    s = audit_settings(settings, tmp_path / "home", backend, SHORT_CLOCKS)
    policy = (s.home_dir / "policy.yaml").read_text()
    (s.home_dir / "policy.yaml").write_text(policy.replace("approval_timeout: 8h", "approval_timeout: 6s", 1))
    return s


async def run_proposals(
    client: Client, s: Settings, plan: list[tuple[Proposal, str | None]], together: bool
) -> dict[str, ProposalState]:
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"

    async def decided(proposal: Proposal, decision: str | None) -> ProposalState:
        if not together:
            # A restart clears the incident; the next proposal cites a fresh one.
            Lab(s.lab_dir).degrade(proposal.target.service)
        await propose(client, s, task_queue, proposal)
        if decision == "approve":
            await approve(client, proposal.proposal_id)
        elif decision == "reject":
            await decide(
                client, proposal.proposal_id, "reject", DecisionInput(approver="bob", reason="not v1")
            )
        return await final(client, proposal.proposal_id)

    async with build_worker(client, s, task_queue):
        if together:
            states = list(await asyncio.gather(*(decided(p, d) for p, d in plan)))
        else:
            # Both change checkout-api: one at a time.
            states = [await decided(p, d) for p, d in plan]
    return {state.proposal.proposal_id: state for state in states}


def check_events(s: Settings, done: dict[str, ProposalState], expected: dict[str, tuple]) -> dict:
    with open_store(s) as store:
        for proposal_id, (status, kinds) in expected.items():
            assert done[proposal_id].status is status, done[proposal_id].reasons
            events = store.timeline(proposal_id)
            assert [e.kind for e in events] == kinds, proposal_id
            assert events[-1].status == status.value
            assert len({e.event_id for e in events}) == len(events)
        assert store.verify().ok
        return compute_metrics(store)["overall"]


async def test_rejected_and_expired_proposals(
    client: Client, settings: Settings, pg_schema: str, alerting_lab: Lab, tmp_path: Path
) -> None:
    s = pg_settings(settings, tmp_path, pg_schema)
    rejected = make_proposal(s, "rollback_deployment", parameters={"release": "v1"})
    expiring = make_proposal(s, "change_access")
    done = await run_proposals(client, s, [(rejected, "reject"), (expiring, None)], together=True)

    m = check_events(
        s,
        done,
        {
            rejected.proposal_id: (ProposalStatus.REJECTED, [*BEFORE_DECISION, "decision", "final"]),
            expiring.proposal_id: (ProposalStatus.EXPIRED, [*BEFORE_DECISION, "escalated", "final"]),
        },
    )
    with open_store(s) as store:
        decision = next(e for e in store.timeline(rejected.proposal_id) if e.kind == "decision")
    assert decision.data["decision"] == "reject" and decision.data["reason"] == "not v1"
    assert decision.data["approver"] == "bob" and decision.data["human"] is True
    assert (m["proposals"], m["finals"], m["completed"], m["backlog"]) == (2, 2, 0, 0)
    assert (m["human_decisions"], m["human_rejections"], m["override_ratio"]) == (1, 1, 1.0)
    # Rejected counts as a false recommendation; expired does not (nobody judged it).
    assert m["false_recommendation_ratio"] == 0.5
    assert (m["escalated"], m["escalation_ratio"]) == (1, 0.5)


async def test_approved_and_rolled_back_proposals(
    client: Client, settings: Settings, pg_schema: str, alerting_lab: Lab, tmp_path: Path
) -> None:
    s = pg_settings(settings, tmp_path, pg_schema)
    approved = make_proposal(s, "restart_service")
    # The rollback first, from another recommender: a rollback right after a restart of the same
    # service scores high (recent change), and the restart after a rolled-back proposal of the
    # same recommender too (track record); both would need signed quorum instead.
    rolled_back = make_proposal(
        s, "rollback_deployment", parameters={"release": "v0"}, recommender="deploy-bot"
    )
    done = await run_proposals(client, s, [(rolled_back, "approve"), (approved, "approve")], together=False)

    m = check_events(
        s,
        done,
        {
            approved.proposal_id: (
                ProposalStatus.COMPLETED,
                # The second verification: the evidence re-read after the run, and cleared.
                [*BEFORE_DECISION, "decision", *EXECUTION, "verification", "final"],
            ),
            rolled_back.proposal_id: (
                ProposalStatus.ROLLED_BACK,
                [*BEFORE_DECISION, "decision", *EXECUTION, "rollback", "final"],
            ),
        },
    )
    with open_store(s) as store:
        events = store.timeline(approved.proposal_id)
    decision = next(e for e in events if e.kind == "decision")
    assert decision.data["approver"] == "alice" and decision.data["human"] is True
    finished = next(e for e in events if e.kind == "execution_finished")
    assert finished.data["ok"] and finished.data["tasks"], "per-task results are recorded"
    assert (m["proposals"], m["finals"], m["completed"], m["backlog"]) == (2, 2, 1, 0)
    assert (m["human_decisions"], m["human_rejections"], m["override_ratio"]) == (2, 0, 0.0)
    assert m["false_recommendation_ratio"] == 0.5  # the rolled-back one
    submitted, ended = events[0].at, events[-1].at
    assert m["mttr_mean_seconds"] == pytest.approx((ended - submitted).total_seconds(), abs=1e-3)
    assert (m["escalated"], m["audit_exceptions"]) == (0, 0)

"""The whole lifecycle on the real dev server, with real Ansible runs against the lab."""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Replayer

from interlock.examples import example_proposal
from interlock.lab import Lab
from interlock.models import ProposalStatus, Stage
from interlock.policy import load_policy
from interlock.proposals import parse_proposal
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER
from interlock.workflows.remediation import RemediationWorkflow
from tests.support import (
    approve,
    final,
    make_proposal,
    new_id,
    propose,
    scored,
    signed,
    submit_only,
    visible,
)

HISTORIES = Path(__file__).parents[2] / "histories"


async def check_replays(client: Client, workflow_id: str, name: str) -> None:
    """Today's code must replay the history it just wrote; optionally record it for the suite."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    await Replayer(workflows=[RemediationWorkflow], data_converter=DATA_CONVERTER).replay_workflow(history)
    if os.environ.get("INTERLOCK_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def test_restart_approved_completes_with_new_pid(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    before = alerting_lab.status()["services"]["checkout-api"]
    proposal = make_proposal(settings, "restart_service")

    state = await propose(client, settings, worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    assert state.evidence is not None and state.evidence.confirmed == 2
    assert state.risk is not None and state.risk.factors
    assert state.preview is not None and state.preview.ok
    assert state.preview.changed_tasks, "the preview must show the restart it would do"
    # Preview is check mode: nothing changed yet.
    assert alerting_lab.status()["services"]["checkout-api"]["pid"] == before["pid"]

    result = await approve(client, proposal.proposal_id)
    assert result.status is ProposalStatus.EXECUTING
    done = await final(client, proposal.proposal_id)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    # The restart cleared what justified it: the health check passes, the alert resolved.
    assert done.evidence_after is not None
    assert [(i.fetched, i.supports) for i in done.evidence_after.items] == [(True, False)] * 2
    assert done.evidence_recheck is None  # approved well within the evidence's max age
    after = alerting_lab.status()["services"]["checkout-api"]
    assert after["healthy"] and after["pid"] != before["pid"]
    assert done.execution is not None and done.execution.tasks
    assert [d.approver for d in done.decisions] == ["alice"]
    await check_replays(client, proposal.proposal_id, "approved_restart")


async def test_rollback_deployment_to_v1_moves_symlink(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    proposal = make_proposal(settings, "rollback_deployment", parameters={"release": "v1"})
    await propose(client, settings, worker, proposal)
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    current = alerting_lab.root / "services" / "checkout-api" / "current"
    assert os.readlink(current).endswith("v1")
    assert alerting_lab.status()["services"]["checkout-api"]["version"] == "v1"

    # Interlock's own record of that deploy is a `changes` evidence source for the next proposal.
    alerting_lab.degrade("checkout-api")
    doc = example_proposal("rollback_deployment", proposal_id=new_id(), parameters={"release": "v2"})
    stamp = doc["evidence"][0]["observed_at"]
    doc["evidence"] += [
        {"source": "interlock-changes", "ref": "deploy:checkout:v1", "observed_at": stamp},
        {"source": "interlock-changes", "ref": "deploy:checkout-api:v0", "observed_at": stamp},
    ]
    after = parse_proposal(doc, load_policy(settings.effective_policy_file))
    state = await scored(client, await submit_only(client, settings, worker, after))
    # The v0 item is not confirmed, so the proposal is already final: rejected_by_checks.
    assert state.evidence is not None
    deployed, never = state.evidence.items[2:]
    assert deployed.ok and deployed.reason.startswith("release v1 was deployed to checkout-api at ")
    assert deployed.observed and deployed.observed["changes"][0]["proposal_id"] == proposal.proposal_id
    assert (never.fetched, never.ok) == (True, False)
    assert never.reason == "no deploy of release v0 to checkout-api on record"
    assert state.status is ProposalStatus.REJECTED_BY_CHECKS


async def test_change_access_grant(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    assert "dana" not in alerting_lab.status()["groups"]["payments-oncall"]
    proposal = make_proposal(settings, "change_access")
    state = await propose(client, settings, worker, proposal)
    assert state.risk is not None and state.risk.tier.value == "high"
    # High risk: two signed approvals, one from the service's owning group (bob: payments).
    first = await signed(client, settings, proposal.proposal_id, "carol")
    assert first.status is ProposalStatus.AWAITING_APPROVAL
    await signed(client, settings, proposal.proposal_id, "bob")
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert "dana" in alerting_lab.status()["groups"]["payments-oncall"]


async def test_reject_changes_nothing(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    before = alerting_lab.status()
    proposal = make_proposal(settings, "rollback_deployment", parameters={"release": "v1"})
    await propose(client, settings, worker, proposal)
    from interlock.models import DecisionInput
    from interlock.proposals import decide

    result = await decide(
        client, proposal.proposal_id, "reject", DecisionInput(approver="bob", reason="not v1")
    )
    assert result.status is ProposalStatus.REJECTED
    done = await final(client, proposal.proposal_id)
    assert done.status is ProposalStatus.REJECTED
    assert done.execution is None
    assert alerting_lab.status()["services"] == before["services"]
    await check_replays(client, proposal.proposal_id, "rejected_rollback")


async def test_rollback_to_broken_release_rolls_back(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    flaky = new_id("flaky")
    proposal = make_proposal(settings, "rollback_deployment", parameters={"release": "v0"}, recommender=flaky)
    await propose(client, settings, worker, proposal)
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.ROLLED_BACK, done.reasons
    assert done.verification is not None and not done.verification.ok
    assert done.rollback is not None and done.rollback.ok
    assert done.rollback_verification is not None and done.rollback_verification.ok
    svc = alerting_lab.status()["services"]["checkout-api"]
    assert svc["healthy"] and svc["version"] == "v2"
    await check_replays(client, proposal.proposal_id, "rolled_back_v0")

    # The rollback counts against the recommender: its next proposal scores higher than the
    # same proposal from a recommender with a clean record.
    await visible(client, f"InterlockRecommender = '{flaky}' AND InterlockStatus = 'rolled_back'")
    alerting_lab.degrade("checkout-api")
    clean = new_id("clean")
    risk = {}
    for who in (flaky, clean):
        p = make_proposal(settings, "restart_service", recommender=who)
        state = await scored(client, await submit_only(client, settings, worker, p))
        await client.get_workflow_handle(p.proposal_id).terminate("test done")
        assert state.risk is not None, state.reasons
        risk[who] = state.risk
    track = {who: next(f for f in r.factors if f.name == "track_record") for who, r in risk.items()}
    assert track[flaky].contribution == 30
    assert track[flaky].detail == (
        f"{flaky}: 1 of 1 finished proposal(s) in the last 30d went wrong "
        "(0 rejected, 1 rolled back, 0 completed_unresolved)"
    )
    assert (track[clean].contribution, track[clean].detail) == (
        0,
        f"{clean} has no finished proposals in the last 30d",
    )
    assert risk[flaky].score == risk[clean].score + 30


async def test_failing_rollback_needs_manual_intervention(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    # The release we would roll back to is broken too: the running v2 process is healthy
    # (it read its release at start), but any restart on v2 now fails its health check.
    release = alerting_lab.root / "services" / "checkout-api" / "releases" / "v2" / "release.json"
    release.write_text(json.dumps({"version": "v2", "healthy": False}))
    proposal = make_proposal(settings, "rollback_deployment", parameters={"release": "v0"})
    state = await propose(client, settings, worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.NEEDS_MANUAL_INTERVENTION, done.reasons
    assert any("rollback" in r for r in done.reasons)
    stages = [r.stage for r in (done.execution, done.verification, done.rollback) if r]
    assert stages == [Stage.EXECUTE, Stage.VERIFY, Stage.ROLLBACK]

"""Evidence in the workflow, against the lab's real endpoints: unconfirmed evidence asks no one,
evidence that cleared before execution runs nothing, a change that does not clear its alert is
completed_unresolved, and a recommender's track record raises its next proposal's risk."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest_asyncio
import yaml
from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import Proposal, ProposalState, ProposalStatus
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.conftest import cli_env
from tests.support import approve, final, make_proposal, new_id, propose, scored, submit_only, visible

ALERT = "high_error_rate"
# Short enough that the preview outlasts it, so approval always comes after it.
MAX_AGE_SECONDS = 10
SETTLE_SECONDS = 3


@pytest_asyncio.fixture
async def quick_worker(
    client: Client, settings: Settings, task_queue: str, tmp_path: Path
) -> AsyncIterator[tuple[Settings, str]]:
    """A worker whose policy has 10 s evidence max ages and a 3 s restart settle time."""
    policy = yaml.safe_load((settings.home_dir / "policy.yaml").read_text())  # with dev keys
    for action in policy["actions"].values():
        for source in action["evidence_sources"].values():
            source["max_age"] = f"{MAX_AGE_SECONDS}s"
    policy["actions"]["restart_service"]["settle_time"] = f"{SETTLE_SECONDS}s"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    quick = settings.model_copy(update={"policy_file": path})
    async with build_worker(client, quick, task_queue):
        yield quick, task_queue


def alert_only(proposal: Proposal) -> Proposal:
    """The example citing only the firing alert (a failing dependency leaves health ok)."""
    evidence = [e for e in proposal.evidence if e.source == "lab-alertmanager"]
    return proposal.model_copy(update={"evidence": evidence})


def lab_changes(lab: Lab) -> str:
    return (lab.root / "changes.jsonl").read_text()


async def wait_past_max_age(state: ProposalState) -> None:
    # The feature under test is a clock: approval must come after the evidence's max age.
    assert state.evidence is not None
    waited = (datetime.now(UTC) - state.evidence.checked_at).total_seconds()
    if waited <= MAX_AGE_SECONDS:
        await asyncio.sleep(MAX_AGE_SECONDS + 0.5 - waited)


async def test_unconfirmed_evidence_is_rejected_by_checks_and_asks_no_one(
    client: Client, settings: Settings, worker: str, fresh_lab: Lab
) -> None:
    proposal = make_proposal(settings, "restart_service")
    state = await propose(client, settings, worker, proposal)

    assert state.status is ProposalStatus.REJECTED_BY_CHECKS
    assert state.reasons == [
        "lab-monitor unhealthy: checkout-api is healthy (HTTP 200, status 'ok')",
        f"lab-alertmanager {ALERT}: no active alert HighErrorRate for checkout-api",
    ]
    assert state.preview is None and state.decisions == [] and state.risk is None
    assert ProposalStatus.AWAITING_APPROVAL not in [t.status for t in state.timeline]

    # Not subprocess.run: the worker shares this event loop and must answer the CLI's query.
    cli = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "interlock"),
        "show",
        proposal.proposal_id,
        env=cli_env(settings, worker),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    shown = out.decode()
    assert "- **unconfirmed**: lab-monitor `unhealthy`" in shown
    assert "source said: checkout-api is healthy (HTTP 200, status 'ok')" in shown
    assert "source said: no active alert HighErrorRate for checkout-api" in shown


async def test_condition_cleared_between_approval_and_execution_runs_nothing(
    client: Client, quick_worker: tuple[Settings, str], alerting_lab: Lab
) -> None:
    settings, task_queue = quick_worker
    proposal = make_proposal(settings, "restart_service")
    state = await propose(client, settings, task_queue, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.evidence is not None and state.evidence.confirmed == 2

    alerting_lab.reset()  # the service recovered on its own
    before = lab_changes(alerting_lab)
    await wait_past_max_age(state)
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.REJECTED_BY_CHECKS
    assert done.reasons == [
        "condition cleared: lab-monitor unhealthy: checkout-api is healthy (HTTP 200, status 'ok')",
        f"condition cleared: lab-alertmanager {ALERT}: no active alert HighErrorRate for checkout-api",
    ]
    assert done.execution is None
    assert lab_changes(alerting_lab) == before


async def test_a_restart_that_does_not_clear_the_alert_is_completed_unresolved(
    client: Client, quick_worker: tuple[Settings, str], fresh_lab: Lab
) -> None:
    settings, task_queue = quick_worker
    # A failing dependency: the alert fires, the process is healthy, a restart does not help.
    fresh_lab.degrade("checkout-api", persistent=True)
    recommender = new_id("bot")
    proposal = alert_only(make_proposal(settings, "restart_service", recommender=recommender))
    state = await propose(client, settings, task_queue, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    pid = fresh_lab.status()["services"]["checkout-api"]["pid"]

    await wait_past_max_age(state)
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED_UNRESOLVED, done.reasons
    # Re-checked before execution (it still held), then it ran and verified.
    assert done.evidence_recheck is not None and done.evidence_recheck.ok
    assert done.verification is not None and done.verification.ok
    assert fresh_lab.status()["services"]["checkout-api"]["pid"] != pid
    [reason] = done.reasons
    assert reason.startswith(
        f"not resolved within {SETTLE_SECONDS}s: lab-alertmanager {ALERT}: "
        "alert HighErrorRate is active for checkout-api since"
    )

    # It counts against the recommender's track record.
    await visible(
        client,
        f"InterlockRecommender = '{recommender}' AND InterlockStatus = 'completed_unresolved'",
    )
    again = alert_only(make_proposal(settings, "restart_service", recommender=recommender))
    next_state = await scored(client, (await submit_only(client, settings, task_queue, again)))
    await client.get_workflow_handle(again.proposal_id).terminate("test done")
    assert next_state.risk is not None
    factors = {f.name: f for f in next_state.risk.factors}
    assert factors["track_record"].contribution == 30
    assert "1 of 1 finished proposal(s)" in factors["track_record"].detail
    assert "1 completed_unresolved" in factors["track_record"].detail
    assert factors["recent_change"].contribution == 10
    assert proposal.proposal_id in factors["recent_change"].detail

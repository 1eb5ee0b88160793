"""Every way a proposal can end is recorded: a cancellation from any client ends `cancelled` on
record, and a reset never executes the change a second time under an old approval."""

from __future__ import annotations

import uuid

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.integration.trust.support import lab_changes, stored, wait_status
from tests.support import approve, final, make_proposal, propose


async def test_a_cancel_request_ends_cancelled_with_who_asked_on_record(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    proposal = make_proposal(settings)
    pid = proposal.proposal_id
    state = await propose(client, settings, worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    before = lab_changes(alerting_lab)
    # What the Web UI's "Request Cancellation" and `temporal workflow cancel` send.
    await client.get_workflow_handle(pid).cancel()
    done = await final(client, pid)
    assert done.status is ProposalStatus.CANCELLED
    assert done.reasons and done.reasons[0].startswith("cancelled by client identity")
    events = stored(settings, pid)
    assert events[-1][0] == "final" and events[-1][1]["status"] == "cancelled"
    assert client.identity in events[-1][1]["reasons"][0]
    assert lab_changes(alerting_lab) == before


async def test_a_reset_never_runs_the_change_twice(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    proposal = make_proposal(settings)
    pid = proposal.proposal_id
    await propose(client, settings, worker, proposal)
    await approve(client, pid)
    first = await final(client, pid)
    assert first.status is ProposalStatus.COMPLETED, first.reasons
    restarts = lab_changes(alerting_lab).count(pid[:20])
    assert restarts >= 1

    # Reset to the workflow task that followed the approval: the run replays the approval and
    # reaches execution again, as `temporal workflow reset` or the Web UI's Reset would.
    handle = client.get_workflow_handle(pid)
    events = [e async for e in handle.fetch_history_events()]
    precheck = next(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "precheck_execution"
    )
    task_done = max(
        e.event_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id < precheck
    )
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=pid),
            reason="trust test: replay an old approval",
            workflow_task_finish_event_id=task_done,
            request_id=str(uuid.uuid4()),
        )
    )
    again = await wait_status(client, pid, "needs_manual_intervention", "completed", "rolled_back")
    assert again.status is ProposalStatus.NEEDS_MANUAL_INTERVENTION, again.reasons
    assert "already started by run" in " ".join(again.reasons)
    assert lab_changes(alerting_lab).count(pid[:20]) == restarts, "the change ran a second time"
    finals = [d["status"] for k, d, _ in stored(settings, pid) if k == "final"]
    assert finals == ["completed", "needs_manual_intervention"]

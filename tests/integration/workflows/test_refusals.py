"""Refusals read like answers: what a refused Update carries to the Web UI's dialog and the CLI
is one line (no worker stack trace), and a mistyped field names the field and the shape."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from interlock.lab import Lab
from interlock.settings import Settings
from tests.support import make_proposal, propose, update_events


async def _refusal(client: Client, proposal_id: str, payload: object) -> ApplicationError:
    handle = client.get_workflow_handle(proposal_id)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        # A raw JSON object, as the Web UI's "Send an Update" dialog sends it.
        await handle.execute_update("approve", payload)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    # What the server stored (and the UI shows): the message, and no stack trace.
    assert cause.failure is not None and cause.failure.stack_trace == ""
    assert "\n" not in cause.message and "Traceback" not in cause.message
    return cause


async def test_refused_updates_carry_one_line_and_no_stack_trace(
    client: Client, settings: Settings, worker: str, checkout_degraded: Lab
) -> None:
    proposal = make_proposal(settings)
    state = await propose(client, settings, worker, proposal)
    assert state.status.value == "awaiting_approval"
    pid = proposal.proposal_id

    refused = await _refusal(client, pid, {"approver": "mallory", "reason": "ok"})
    assert refused.message == "'mallory' is not an approver in the policy's roster"

    typo = await _refusal(client, pid, {"aprover": "alice", "reason": "ok"})
    assert typo.message == (
        "invalid DecisionInput: field 'aprover': unknown field; "
        'expected {"approver": string, "reason": string, "token": string or null}'
    )
    assert typo.type == "InvalidInput"

    wrong_type = await _refusal(client, pid, {"approver": 7})
    assert wrong_type.message.startswith(
        "invalid DecisionInput: field 'approver': input should be a valid string"
    )

    not_an_object = await _refusal(client, pid, "alice")
    assert not_an_object.message.startswith("invalid DecisionInput: input should be")
    assert await update_events(client, pid) == 0
    await client.get_workflow_handle(pid).terminate("test done")

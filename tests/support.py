"""Small helpers the workflow tests share: submit an example proposal, decide, read history."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from interlock.examples import example_proposal
from interlock.models import DecisionInput, DecisionResult, Proposal, ProposalState
from interlock.policy import load_policy
from interlock.proposals import (
    decide,
    get_state,
    parse_proposal,
    sign_decision,
    submit,
    wait_until_final,
    wait_until_settled,
)
from interlock.settings import Settings


def new_id(prefix: str = "prop") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_proposal(settings: Settings, action: str = "restart_service", **kw: Any) -> Proposal:
    # An incident of its own: proposals for one incident would be deduplicated into one.
    kw.setdefault("incident", new_id("INC"))
    doc = example_proposal(action, proposal_id=kw.pop("proposal_id", new_id()), **kw)
    return parse_proposal(doc, load_policy(settings.effective_policy_file))


async def propose(client: Client, settings: Settings, task_queue: str, proposal: Proposal) -> ProposalState:
    policy = load_policy(settings.effective_policy_file)
    await submit(client, proposal, task_queue, policy)
    return await wait_until_settled(client, proposal.proposal_id, timeout=120)


async def approve(
    client: Client, proposal_id: str, approver: str = "alice", reason: str = "looks right"
) -> DecisionResult:
    """An unsigned approval (what someone types into the Web UI without a token)."""
    return await decide(client, proposal_id, "approve", DecisionInput(approver=approver, reason=reason))


async def signed(
    client: Client,
    settings: Settings,
    proposal_id: str,
    approver: str,
    decision: str = "approve",
    reason: str = "checked",
) -> DecisionResult:
    token = await sign_decision(client, settings.keys_dir, proposal_id, decision, approver, reason)
    return await decide(client, proposal_id, decision, DecisionInput(token=token))


async def final(client: Client, proposal_id: str) -> ProposalState:
    return await wait_until_final(client, proposal_id, timeout=300)


async def update_events(client: Client, workflow_id: str) -> int:
    """How many Update events the history holds (a refused Update must leave none)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        e.HasField("workflow_execution_update_accepted_event_attributes")
        or e.HasField("workflow_execution_update_completed_event_attributes")
        for e in history.events
    )


async def submit_only(client: Client, settings: Settings, task_queue: str, proposal: Proposal) -> str:
    await submit(client, proposal, task_queue, load_policy(settings.effective_policy_file))
    return proposal.proposal_id


async def scored(client: Client, proposal_id: str) -> ProposalState:
    """The proposal's state as soon as its risk is scored (or it is final): no need to wait
    for the preview."""
    for _ in range(480):
        try:
            state = await get_state(client, proposal_id)
            if state.risk is not None or state.status.is_final:
                return state
        except RPCError:  # the first workflow task may not have run yet
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{proposal_id} was not scored")


async def visible(client: Client, query: str) -> None:
    """Wait until visibility has indexed what a finished proposal left behind."""
    for _ in range(240):
        if (await client.count_workflows(query)).count:
            return
        await asyncio.sleep(0.25)
    raise TimeoutError(f"nothing matches {query}")


HISTORIES = Path(__file__).parent / "histories"


async def replays_and_recorded(
    client: Client, workflow_id: str, name: str, run_id: str | None = None
) -> None:
    """Today's code must replay the history a test just wrote; with INTERLOCK_RECORD_HISTORIES=1
    it is also stored in tests/histories, which tests/unit/test_replay.py replays forever."""
    from temporalio.worker import Replayer

    from interlock.temporal import DATA_CONVERTER
    from interlock.workflows.remediation import RemediationWorkflow

    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    await Replayer(workflows=[RemediationWorkflow], data_converter=DATA_CONVERTER).replay_workflow(history)
    if os.environ.get("INTERLOCK_RECORD_HISTORIES"):
        (HISTORIES / f"{name}.json").write_text(history.to_json())

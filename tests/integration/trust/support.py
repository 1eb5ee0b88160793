"""What the trust tests share: starting RemediationWorkflow by hand, as any client with
namespace access can, and reading what it left in the lab and the audit store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle

from interlock.audit import open_store
from interlock.contracts import Workflow
from interlock.lab import Lab
from interlock.models import ProposalState
from interlock.proposals import get_state
from interlock.settings import Settings


async def start_by_hand(client: Client, task_queue: str, workflow_id: str, arg: Any) -> WorkflowHandle:
    """A start that skips the intake and the CLI: the input is whatever the caller wrote."""
    return await client.start_workflow(Workflow.REMEDIATION, arg, id=workflow_id, task_queue=task_queue)


def now() -> datetime:
    return datetime.now(UTC)


def lab_changes(lab: Lab) -> str:
    path = lab.root / "changes.jsonl"
    return path.read_text() if path.exists() else ""


def stored(settings: Settings, proposal_id: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """(kind, data, event_id) of each audit event recorded for `proposal_id`."""
    with open_store(settings) as store:
        return [(e.kind, dict(e.data), e.event_id) for e in store.timeline(proposal_id)]


async def wait_status(
    client: Client, proposal_id: str, *statuses: str, timeout: float = 120
) -> ProposalState:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            state = await get_state(client, proposal_id)
            if state.status.value in statuses:
                return state
        except Exception:  # noqa: BLE001 - not started yet
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{proposal_id} never reached {statuses}")
        await asyncio.sleep(0.25)

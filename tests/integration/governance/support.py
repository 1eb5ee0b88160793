"""Helpers the governance tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio.client import Client

from interlock.models import ProposalState
from interlock.proposals import get_state


async def wait_for(
    client: Client, proposal_id: str, done: Callable[[ProposalState], bool], timeout: float = 120
) -> ProposalState:
    """Poll the proposal's state until `done` holds (or fail with the status it is stuck in)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        state = await get_state(client, proposal_id)
        if done(state):
            return state
        assert loop.time() < deadline, f"{proposal_id} still {state.status.value}"
        await asyncio.sleep(0.1)

"""The kill switch: `interlock pause` per scope holds approved proposals (status `paused`)
within a second, and `interlock resume` with the same scope lets them run."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import Client

from interlock.audit import open_store
from interlock.lab import Lab
from interlock.models import DecisionInput, ProposalStatus
from interlock.proposals import DecisionRefused, decide
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.conftest import cli_env
from tests.integration.governance.support import wait_for
from tests.support import approve, final, make_proposal, propose, replays_and_recorded

INTERLOCK = str(Path(sys.executable).parent / "interlock")


async def interlock(s: Settings, task_queue: str, *args: str) -> str:
    env = cli_env(s, task_queue) | {"INTERLOCK_POLICY": str(s.effective_policy_file)}
    proc = await asyncio.create_subprocess_exec(
        INTERLOCK, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


# (scope, a different scope whose resume must not release it, pause before the proposal starts)
SCOPES = [
    (["--all"], ["--action", "restart_service"], False),
    (["--action", "restart_service"], ["--action", "rollback_deployment"], False),
    # Paused before the proposal exists: no signal reaches it; the re-check reads the store.
    (["--recommender", "triage-bot"], ["--all"], True),
    (["--service", "checkout-api"], ["--recommender", "triage-bot"], False),
]


@pytest.mark.parametrize(("scope", "other", "pause_first"), SCOPES, ids=lambda v: str(v))
async def test_pause_holds_an_approved_proposal_until_resumed(
    client: Client,
    governed: Callable[..., Settings],
    task_queue: str,
    fresh_lab: Lab,
    scope: list[str],
    other: list[str],
    pause_first: bool,
) -> None:
    s = governed()
    before = fresh_lab.status()["services"]["checkout-api"]["pid"]
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        if pause_first:
            await interlock(s, task_queue, "pause", *scope, "--reason", "incident 42")
        state = await propose(client, s, task_queue, proposal)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        if not pause_first:
            await interlock(s, task_queue, "pause", *scope, "--reason", "incident 42")
            started = time.monotonic()
            await wait_for(client, proposal.proposal_id, lambda st: bool(st.pauses), timeout=5)
            assert time.monotonic() - started < 1.0, "a pause must take effect within a second"

        result = await approve(client, proposal.proposal_id)
        assert result.status is ProposalStatus.PAUSED
        if scope == ["--all"]:
            listed = json.loads(await interlock(s, task_queue, "pause", "--list", "--json"))
            assert [(p["scope"]["all"], p["reason"]) for p in listed] == [(True, "incident 42")]

        # Resuming some other scope releases nothing.
        await interlock(s, task_queue, "resume", *other)
        # A negative check needs a window: nothing may start in it.
        await asyncio.sleep(1.0)
        state = await wait_for(client, proposal.proposal_id, lambda st: True)
        assert state.status is ProposalStatus.PAUSED and state.execution is None
        assert state.pauses and state.pauses[0].reason == "incident 42"
        assert fresh_lab.status()["services"]["checkout-api"]["pid"] == before

        await interlock(s, task_queue, "resume", *scope)
        done = await final(client, proposal.proposal_id)
        await replays_and_recorded(client, proposal.proposal_id, "paused_then_resumed")

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert fresh_lab.status()["services"]["checkout-api"]["pid"] != before
    statuses = [e.status for e in done.timeline]
    assert statuses.index(ProposalStatus.PAUSED) < statuses.index(ProposalStatus.EXECUTING)
    store = open_store(s)
    try:
        kinds = [e.kind for e in store.timeline(proposal.proposal_id)]
    finally:
        store.close()
    assert kinds.index("paused") < kinds.index("resumed") < kinds.index("execution_started")


async def test_a_paused_proposal_can_still_be_rejected(
    client: Client, governed: Callable[..., Settings], task_queue: str, fresh_lab: Lab
) -> None:
    s = governed()
    before = fresh_lab.status()["services"]
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        await propose(client, s, task_queue, proposal)
        await interlock(s, task_queue, "pause", "--service", "checkout-api", "--reason", "incident 43")
        assert (await approve(client, proposal.proposal_id)).status is ProposalStatus.PAUSED
        with pytest.raises(DecisionRefused, match="proposal is paused, not awaiting_approval"):
            await approve(client, proposal.proposal_id, approver="carol")
        result = await decide(
            client,
            proposal.proposal_id,
            "reject",
            DecisionInput(approver="bob", reason="the incident changed the picture"),
        )
        assert result.status is ProposalStatus.REJECTED
        done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.REJECTED and done.execution is None
    assert done.reasons == ["rejected by bob: the incident changed the picture"]
    assert fresh_lab.status()["services"] == before

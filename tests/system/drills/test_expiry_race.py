"""An approval and the approval timer racing: one outcome, and nothing runs after `expired`.

The policy gives restart_service a 3 s approval timeout. Each proposal is approved at a different
moment around its expiry deadline (read from the workflow's own timeline), on a real dev server
in real time. Whichever wins, the proposal has one final status; an expired one has no decision
that counts, no execution, no change in the lab and no execution audit event; a completed one has
no expiry anywhere.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import yaml
from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.proposals import DecisionRefused, wait_until_settled
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.system.drills.conftest import SERVICES
from tests.system.drills.support import (
    all_final,
    approve,
    check_audit,
    check_changes,
    submit_many,
)

TIMEOUT = timedelta(seconds=3)
# When each approval is sent, relative to the expiry deadline (seconds).
OFFSETS = [-0.6, -0.15, -0.05, 0.0, 0.05, 0.15, 0.6]


def short_timeout(settings: Settings) -> None:
    path = settings.home_dir / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["actions"]["restart_service"]["approval_timeout"] = f"{TIMEOUT.total_seconds():.0f}s"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


async def approve_at(client: Client, pid: str, offset: float) -> Any:
    state = await wait_until_settled(client, pid, timeout=600, interval=0.1)
    waiting_since = next(
        t.at for t in state.timeline if t.status is ProposalStatus.AWAITING_APPROVAL
    ).timestamp()
    # A freshly awaiting proposal's deadline is its awaiting time plus the approval timeout.
    await asyncio.sleep(max(0.0, waiting_since + TIMEOUT.total_seconds() + offset - time.time()))
    try:
        return await approve(client, pid)
    except DecisionRefused as exc:
        return exc


async def test_approval_racing_expiry_has_one_outcome_and_runs_nothing_after_expired(
    drill_client: Client, drill_settings: Settings, drill_lab: Lab
) -> None:
    client, settings = drill_client, drill_settings
    short_timeout(settings)
    queue = f"race-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, settings, queue):
        # One service each at a time: approvals that win run restarts concurrently.
        ids = await submit_many(client, settings, queue, len(OFFSETS), "race", SERVICES)
        # Approvals are timed from the workflow's own timeline, not from when we saw it waiting.
        answers = await asyncio.gather(*(approve_at(client, p, o) for p, o in zip(ids, OFFSETS, strict=True)))
        finals = await all_final(client, ids)

    outcomes = {}
    for pid, answer in zip(ids, answers, strict=True):
        state = finals[pid]
        outcomes[pid] = state.status
        assert state.status in (ProposalStatus.COMPLETED, ProposalStatus.EXPIRED), (pid, state.status)
        statuses = [t.status for t in state.timeline]
        if state.status is ProposalStatus.EXPIRED:
            assert state.execution is None and state.verification is None
            assert ProposalStatus.EXECUTING not in statuses
            # Expired is the last thing that happened: the timeline ends there.
            assert statuses[-1] is ProposalStatus.EXPIRED and statuses.count(ProposalStatus.EXPIRED) == 1
            # The approval was refused, or answered with the expiry it lost to.
            if not isinstance(answer, DecisionRefused):
                assert answer.status is ProposalStatus.EXPIRED, (pid, answer)
        else:
            assert not isinstance(answer, DecisionRefused), (pid, answer)
            assert answer.status is ProposalStatus.EXECUTING
            assert ProposalStatus.EXPIRED not in statuses
            assert state.execution is not None and state.execution.ok
    check_changes(drill_lab, finals)
    check_audit(settings, finals)

"""Expiry on the time-skipping test server: a proposal nobody decides on expires; nothing runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import get_state, submit, wait_until_settled
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER
from interlock.worker.main import build_worker
from tests.conftest import time_skipping_server_bin
from tests.support import make_proposal


@pytest_asyncio.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=time_skipping_server_bin(), data_converter=DATA_CONVERTER
    ) as env:
        yield env


async def test_unanswered_proposal_expires_after_24h_and_changes_nothing(
    skipping_env: WorkflowEnvironment, settings: Settings, task_queue: str, alerting_lab: Lab
) -> None:
    before = alerting_lab.status()
    client = skipping_env.client
    proposal = make_proposal(settings, "rollback_deployment", parameters={"release": "v1"})
    async with build_worker(client, settings, task_queue):
        # The time-skipping server has no custom search attributes: submit without them.
        await submit(
            client,
            proposal,
            task_queue,
            load_policy(settings.effective_policy_file),
            search_attributes=False,
            # The time-skipping test server has one namespace: claims stay in it.
            claims_namespace=client.namespace,
        )
        state = await wait_until_settled(client, proposal.proposal_id, timeout=120)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        start = await skipping_env.get_current_time()
        await skipping_env.sleep(timedelta(hours=23))
        assert (await get_state(client, proposal.proposal_id)).status is (ProposalStatus.AWAITING_APPROVAL)
        await skipping_env.sleep(timedelta(hours=1, minutes=5))
        done = await get_state(client, proposal.proposal_id)
        waited = await skipping_env.get_current_time() - start

    assert done.status is ProposalStatus.EXPIRED
    assert done.execution is None and done.decisions == []
    assert waited.total_seconds() >= 24 * 3600 - 60
    assert alerting_lab.status()["services"] == before["services"]

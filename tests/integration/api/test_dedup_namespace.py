"""No clutter: dedup claims live in `<namespace>-dedup`, so the proposals' namespace (the Web UI's
default list) shows proposals only; without that namespace, claims fall back beside the
proposals with a warning, and dedup still holds."""

from __future__ import annotations

import asyncio
import logging

import pytest
from temporalio.client import Client

from interlock import dedup
from interlock.contracts import Workflow
from interlock.dedup import claim_id, claim_or_attach, claims_namespace
from interlock.policy import load_policy
from interlock.settings import Settings
from tests.support import make_proposal

CLAIMS = f"WorkflowType = '{Workflow.DEDUP_CLAIM.value}'"


async def _count(client: Client, query: str) -> int:
    for _ in range(40):  # visibility is eventually consistent
        count = (await client.count_workflows(query)).count
        if count:
            return count
        await asyncio.sleep(0.25)
    return 0


async def test_claims_stay_out_of_the_proposals_namespace(
    client: Client, settings: Settings, task_queue: str
) -> None:
    policy = load_policy(settings.effective_policy_file)
    first = make_proposal(settings)
    key = policy.dedup.key_of(first, "checkout-api")
    assert key is not None
    # The claim alone needs no worker; the first proposal "owns" it from here on.
    assert await claim_or_attach(client, first, key, task_queue, policy) is None
    claims = dedup.claims_client(client)
    assert claims.namespace == claims_namespace(client.namespace) == "default-dedup"
    assert settings.claims_namespace == "default-dedup"
    query = f"{CLAIMS} AND WorkflowId = '{claim_id(task_queue, key)}'"
    assert await _count(claims, query) == 1
    assert (await client.count_workflows(query)).count == 0
    await claims.get_workflow_handle(claim_id(task_queue, key)).terminate("test over")


async def test_a_missing_claims_namespace_falls_back_with_a_warning(
    client: Client, settings: Settings, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy = load_policy(settings.effective_policy_file)
    proposal = make_proposal(settings)
    key = policy.dedup.key_of(proposal, "checkout-api")
    assert key is not None
    missing = f"no-such-namespace-{task_queue}"
    with caplog.at_level(logging.WARNING, logger="interlock.dedup"):
        assert await claim_or_attach(client, proposal, key, task_queue, policy, namespace=missing) is None
    assert any(missing in r.getMessage() and "does not exist" in r.getMessage() for r in caplog.records)
    query = f"{CLAIMS} AND WorkflowId = '{claim_id(task_queue, key)}'"
    assert await _count(client, query) == 1
    await client.get_workflow_handle(claim_id(task_queue, key)).terminate("test over")

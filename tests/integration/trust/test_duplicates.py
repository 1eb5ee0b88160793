"""Duplicates cannot be forged: `add_duplicate` attaches only a proposal for the owner's problem,
and a dedup claim pointed at an unrelated proposal is taken over, not followed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client

from interlock.contracts import Signal, Workflow
from interlock.dedup import claim_id, claims_client
from interlock.lab import Lab
from interlock.models import AttachDuplicate, DedupClaim, ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import get_state, submit
from interlock.settings import Settings
from tests.integration.trust.support import now, stored
from tests.support import make_proposal, propose, replays_and_recorded


async def test_a_duplicate_for_another_problem_is_refused_and_recorded(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    owner = make_proposal(settings)
    assert (await propose(client, settings, worker, owner)).status is ProposalStatus.AWAITING_APPROVAL
    handle = client.get_workflow_handle(owner.proposal_id)
    other = make_proposal(settings)  # an incident of its own: another dedup key
    same = make_proposal(settings, incident=owner.incident)
    await handle.signal(Signal.ADD_DUPLICATE, AttachDuplicate(proposal=other, received_at=now()))
    await handle.signal(Signal.ADD_DUPLICATE, AttachDuplicate(proposal=same, received_at=now()))
    for _ in range(120):
        kinds = [k for k, _, _ in stored(settings, owner.proposal_id)]
        if "duplicate" in kinds and kinds.count("security"):
            break
        await asyncio.sleep(0.25)
    state = await get_state(client, owner.proposal_id)
    assert [d.proposal_id for d in state.duplicates] == [same.proposal_id]
    assert state.duplicate_count == 1
    refused = [d for k, d, _ in stored(settings, owner.proposal_id) if k == "security"]
    assert refused and refused[0]["duplicate"] == other.proposal_id
    assert "dedup key" in refused[0]["reasons"][0]
    await handle.terminate("test over")
    await replays_and_recorded(client, owner.proposal_id, "duplicate_refused")


async def test_a_claim_pointed_at_an_unrelated_proposal_is_taken_over(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    policy = load_policy(settings.effective_policy_file)
    victim = make_proposal(settings)
    assert (await propose(client, settings, worker, victim)).status is ProposalStatus.AWAITING_APPROVAL
    newcomer = make_proposal(settings)
    key = policy.dedup.key_of(newcomer, "checkout-api")
    assert key is not None
    # The forged claim: the newcomer's key, "held" by the victim's open proposal.
    await claims_client(client).start_workflow(
        Workflow.DEDUP_CLAIM,
        DedupClaim(key=key, owner=victim.proposal_id, window=timedelta(minutes=5)),
        id=claim_id(worker, key),
        task_queue=worker,
        memo={"owner": victim.proposal_id, "key": key},
    )
    submission = await submit(client, newcomer, worker, policy)
    assert submission.duplicate_of is None
    assert submission.created
    assert (await get_state(client, victim.proposal_id)).duplicate_count == 0
    for pid in (victim.proposal_id, newcomer.proposal_id):
        await client.get_workflow_handle(pid).terminate("test over")

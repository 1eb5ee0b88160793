"""What a duplicate costs in Temporal round trips: what is fixed per run is read once.

A claim run's owner and the proposal its owner's run was started with never change, so a storm
of duplicates for one problem reads them once; each further duplicate costs the claim start
(refused), a describe of itself (never its own duplicate) and of the owner (still open?), and
the signal. The owner's status comes with the attach, not from another describe. A new claim
run (a takeover) is a new key: the cache never attaches to a closed owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio.client import Client

from interlock.models import ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import submit
from interlock.settings import Settings
from tests.support import make_proposal, new_id


@contextmanager
def counted_rpcs(client: Client) -> Iterator[list[str]]:
    """The name of every RPC the client's connection makes meanwhile (claims namespace too)."""
    service = client.service_client
    calls: list[str] = []
    original = service._rpc_call

    async def counting(rpc: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(rpc)
        return await original(rpc, *args, **kwargs)

    service._rpc_call = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        service._rpc_call = original  # type: ignore[method-assign]


async def test_after_the_first_duplicate_each_costs_four_round_trips(
    client: Client, settings: Settings, task_queue: str
) -> None:
    policy = load_policy(settings.effective_policy_file)
    incident = new_id("INC")
    owner = make_proposal(settings, incident=incident)
    assert (await submit(client, owner, task_queue, policy)).created  # no worker: it stays submitted

    costs: list[list[str]] = []
    for recommender in ("deploy-bot", "capacity-bot", "triage-bot", "deploy-bot"):
        dup = make_proposal(settings, incident=incident, recommender=recommender)
        with counted_rpcs(client) as calls:
            sub = await submit(client, dup, task_queue, policy)
        assert sub.duplicate_of == owner.proposal_id and not sub.created
        assert sub.duplicate_status is ProposalStatus.SUBMITTED
        costs.append(sorted(calls))

    # The first reads the claim and the owner's started proposal; the others have them.
    assert "get_workflow_execution_history" in costs[0]
    for calls in costs[1:]:
        assert calls == [
            "describe_workflow_execution",
            "describe_workflow_execution",
            "signal_workflow_execution",
            "start_workflow_execution",
        ], calls
    history = await client.get_workflow_handle(owner.proposal_id).fetch_history()
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 4


async def test_a_taken_over_key_attaches_to_the_new_owner_not_the_cached_one(
    client: Client, settings: Settings, task_queue: str
) -> None:
    policy = load_policy(settings.effective_policy_file)
    incident = new_id("INC")
    first = make_proposal(settings, incident=incident)
    await submit(client, first, task_queue, policy)
    attached = await submit(client, make_proposal(settings, incident=incident), task_queue, policy)
    assert attached.duplicate_of == first.proposal_id  # the claim and its owner are cached now
    await client.get_workflow_handle(first.proposal_id).terminate(reason="test: closed")

    second = make_proposal(settings, incident=incident)
    taken = await submit(client, second, task_queue, policy)
    dup = await submit(client, make_proposal(settings, incident=incident), task_queue, policy)

    assert taken.created and taken.duplicate_of is None
    assert dup.duplicate_of == second.proposal_id

"""One proposal per problem: claim a dedup key, or attach to the open proposal that holds it.

The key (policy `dedup.key`) names a problem, e.g. action + canonical service + environment +
incident. Its claim is a workflow with an id derived from the key (workflows/dedup.py): the
server lets only one start succeed, so concurrent submissions cannot both start a proposal,
whatever visibility (eventually consistent) would have shown. The loser sends the winner an
`add_duplicate` signal instead. A claim whose proposal is final, or never started, is taken
over by compare-and-swap: terminate that claim run (and only that run), then claim again.
Claims live in a namespace of their own (`<namespace>-dedup`), so the Web UI's default list
shows proposals only; no worker serves it (a claim ends by its execution timeout).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Generic, TypeVar

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from interlock import search
from interlock.contracts import Signal, Workflow
from interlock.models import AttachDuplicate, DedupClaim, Proposal, ProposalStatus, RemediationInput
from interlock.policy import Policy

log = logging.getLogger(__name__)

CLAIM_WORKFLOW = Workflow.DEDUP_CLAIM.value
# The owner starts its workflow right after claiming; a claim whose proposal has not started
# after this long was abandoned (its submitter died) and may be taken over.
START_GRACE = timedelta(seconds=15)
# Beyond the window, the claim workflow has ended by itself; the margin covers a missing worker.
_CLAIM_TIMEOUT_MARGIN = timedelta(minutes=10)


class _Owner(Enum):
    ATTACHED = "attached"
    STARTING = "starting"
    GONE = "gone"


@dataclass(frozen=True)
class Attached:
    """Where a duplicate went: the open proposal it joined, and that proposal's status search
    attribute as read while attaching (None when it has none)."""

    owner: str
    status: ProposalStatus | None


_K = TypeVar("_K")
_V = TypeVar("_V")


class _RunCache(Generic[_K, _V]):
    """What never changes for a given run id, bounded (least recently used goes first).

    A claim run's owner and start time are set when it starts; the proposal a workflow run was
    started with is its first history event. So a storm of duplicates for one claim reads them
    from Temporal once per run, not once per duplicate. A new run (a takeover) is a new key."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


# (claims namespace, claim id, claim run id) -> (owner from the run's memo, the run's start time)
_claim_runs: _RunCache[tuple[str, str, str], tuple[str | None, datetime]] = _RunCache()
# (namespace, workflow id, run id) -> (the proposal that run was started with, or None)
_started_proposals: _RunCache[tuple[str, str, str], tuple[Proposal | None]] = _RunCache()


class DedupUnsettled(RuntimeError):
    """The key kept changing hands for longer than a claim can take (should not happen)."""


def claims_namespace(namespace: str) -> str:
    """The default namespace of the claims: beside the proposals', out of their list."""
    return f"{namespace}-dedup"


# Claims namespaces found missing: warned about once, then the proposals' namespace is used.
_missing_namespaces: set[str] = set()


def claims_client(client: Client, namespace: str | None = None) -> Client:
    """A client for the claims namespace, on the same connection as `client`."""
    name = namespace or claims_namespace(client.namespace)
    if name == client.namespace or name in _missing_namespaces:
        return client
    return Client(client.service_client, namespace=name, data_converter=client.data_converter)


def claim_id(task_queue: str, key: str) -> str:
    """The claim workflow's id. Scoped by task queue: two installations sharing a namespace
    (or two test runs) never attach to each other's proposals."""
    digest = hashlib.sha256(f"{task_queue}\n{key}".encode()).hexdigest()[:40]
    return f"interlock-dedup-{digest}"


async def claim_or_attach(
    client: Client,
    proposal: Proposal,
    key: str,
    task_queue: str,
    policy: Policy,
    namespace: str | None = None,
) -> str | None:
    """None when this proposal owns the key (start its workflow); else the open proposal's id
    it was attached to as a duplicate. `namespace`: where claims live (default
    `<client's namespace>-dedup`)."""
    attached = await claim_or_attach_to(client, proposal, key, task_queue, policy, namespace)
    return attached.owner if attached is not None else None


async def claim_or_attach_to(
    client: Client,
    proposal: Proposal,
    key: str,
    task_queue: str,
    policy: Policy,
    namespace: str | None = None,
) -> Attached | None:
    """As `claim_or_attach`, with the owner's status read while attaching (no further read)."""
    me = proposal.proposal_id
    window = policy.dedup.window
    cid = claim_id(task_queue, key)
    claims = claims_client(client, namespace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_GRACE.total_seconds() + 15
    while loop.time() < deadline:
        try:
            await claims.start_workflow(
                CLAIM_WORKFLOW,
                DedupClaim(key=key, owner=me, window=window),
                id=cid,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                # In its own namespace no worker runs the claim: the timeout ends it, on time.
                # Beside the proposals a worker sleeps it out; the margin covers a missing one.
                execution_timeout=window if claims is not client else window + _CLAIM_TIMEOUT_MARGIN,
                memo={"owner": me, "key": key},
                static_summary=f"dedup key held by {me}: {key}",
            )
            log.info("proposal %s claims dedup key %s in %s", me, key, claims.namespace)
            return None
        except WorkflowAlreadyStartedError as exc:
            # With the FAIL conflict policy the error names the running claim's run.
            running_run = exc.run_id
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or claims is client:
                raise
            # NOT_FOUND on a start: the claims namespace does not exist. Claims still work
            # beside the proposals (they only clutter the Web UI's list).
            log.warning(
                "namespace %s for dedup claims does not exist (create it: temporal operator "
                "namespace create -n %s); claiming in %s instead",
                claims.namespace,
                claims.namespace,
                client.namespace,
            )
            _missing_namespaces.add(claims.namespace)
            claims = client
            continue
        known = _claim_runs.get((claims.namespace, cid, running_run)) if running_run else None
        if known is not None:
            owner, claimed_at = known
            run_id = running_run
        else:
            try:
                claim = await claims.get_workflow_handle(cid).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue  # ended between our start and describe: claim again
            if claim.status != WorkflowExecutionStatus.RUNNING:
                continue
            owner = await claim.memo_value("owner", default=None, type_hint=str)
            claimed_at = claim.start_time or datetime.now(UTC)
            run_id = claim.run_id
            if claim.start_time is not None:
                _claim_runs.put((claims.namespace, cid, run_id), (owner, claim.start_time))
        if owner == me or owner is None or await _exists(client, me):
            # Our own claim, or a resubmission of a proposal that already has its workflow
            # (it is never its own duplicate): start or find that workflow.
            return None
        verdict, status = await _attach(client, owner, proposal, key, policy, claimed_at)
        if verdict is _Owner.ATTACHED:
            log.info("proposal %s attached to %s as a duplicate", me, owner)
            return Attached(owner, status)
        if verdict is _Owner.STARTING:
            await asyncio.sleep(0.1)
            continue
        log.info("dedup key %s: holder %s is final or abandoned; %s takes it over", key, owner, me)
        try:
            await claims.get_workflow_handle(cid, run_id=run_id).terminate(
                reason=f"{owner} is final or was never started; {me} takes the key over"
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise  # NOT_FOUND: another submitter took it over first; claim again
    raise DedupUnsettled(f"could not settle dedup key {key!r} for {me}")


async def _attach(
    client: Client, owner: str, proposal: Proposal, key: str, policy: Policy, claimed_at: datetime
) -> tuple[_Owner, ProposalStatus | None]:
    handle = client.get_workflow_handle(owner)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        young = datetime.now(UTC) - claimed_at < START_GRACE
        return (_Owner.STARTING if young else _Owner.GONE), None
    status = desc.typed_search_attributes.get(search.SA_STATUS)
    if desc.status != WorkflowExecutionStatus.RUNNING or _final(status):
        return _Owner.GONE, None
    # Anyone with namespace access can start a claim naming any proposal: attach only to an
    # owner whose own input (what its workflow runs on) is a proposal for this key. Read from
    # its first history event, so no worker needs to answer.
    if await _key_of_started(client, owner, desc.run_id, policy) != key:
        log.warning("dedup key %s names %s, a proposal for another problem: taking it over", key, owner)
        return _Owner.GONE, None
    try:
        await handle.signal(
            Signal.ADD_DUPLICATE, AttachDuplicate(proposal=proposal, received_at=datetime.now(UTC))
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return _Owner.GONE, None  # it closed a moment ago
    return _Owner.ATTACHED, _status(status)


async def _key_of_started(client: Client, workflow_id: str, run_id: str, policy: Policy) -> str | None:
    """The dedup key of the proposal a workflow run was started with (None if it is not one).

    The proposal is fixed for the run, so it is read once per run id; the key is worked out
    from it each time, with the policy in force (key fields and service aliases)."""
    cache_key = (client.namespace, workflow_id, run_id)
    known = _started_proposals.get(cache_key)
    if known is None:
        known = (await _started_proposal(client, workflow_id, run_id),)
        _started_proposals.put(cache_key, known)
    (proposal,) = known
    if proposal is None:
        return None
    service = policy.canonical_service(proposal.target.service) or proposal.target.service
    return policy.dedup.key_of(proposal, service)


async def _started_proposal(client: Client, workflow_id: str, run_id: str) -> Proposal | None:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events(page_size=1):
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        try:
            started = client.data_converter.payload_converter.from_payload(payloads[0], RemediationInput)
        except (IndexError, ValueError, TypeError):
            return None
        return started.proposal
    return None


async def _exists(client: Client, proposal_id: str) -> bool:
    try:
        await client.get_workflow_handle(proposal_id).describe()
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


def _status(value: str | None) -> ProposalStatus | None:
    try:
        return ProposalStatus(value) if value else None
    except ValueError:
        return None


def _final(status: str | None) -> bool:
    try:
        return status is not None and ProposalStatus(status).is_final
    except ValueError:
        return False

"""Submitting and reading proposals: the client side shared by the CLI, the API and the SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from interlock import search
from interlock.contracts import Query, Update, Workflow
from interlock.dedup import claim_or_attach_to
from interlock.models import (
    Channel,
    DecisionInput,
    DecisionResult,
    Proposal,
    ProposalState,
    ProposalStatus,
    RemediationInput,
)
from interlock.policy import Policy, format_validation_errors, validate_against_policy
from interlock.presentation import static_details, static_summary

WORKFLOW_TYPE = Workflow.REMEDIATION.value


class ProposalInvalid(ValueError):
    """A proposal refused before any workflow starts; `errors` names each field and reason."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


class ProposalConflict(ValueError):
    """The proposal id is taken by a different proposal."""


class ProposalNotFound(LookupError):
    pass


class DecisionRefused(ValueError):
    """An Update validator refused the decision; nothing was written to history."""


def parse_proposal(data: str | bytes | dict[str, Any], policy: Policy) -> Proposal:
    """Validate a proposal document fully (shape, types, catalog) or raise ProposalInvalid."""
    try:
        if isinstance(data, dict):
            proposal = Proposal.model_validate(data, strict=False)
        else:
            proposal = Proposal.model_validate_json(data)
    except ValidationError as exc:
        raise ProposalInvalid(format_validation_errors(exc)) from exc
    errors = validate_against_policy(proposal, policy)
    if errors:
        raise ProposalInvalid(errors)
    return proposal


def body_digest(proposal: Proposal) -> str:
    canonical = json.dumps(proposal.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Submission:
    proposal_id: str
    workflow_id: str
    created: bool
    run_id: str | None
    # The open proposal for the same problem this one was attached to (no workflow of its own).
    duplicate_of: str | None = None
    # That proposal's status search attribute, read while attaching (None: it has none yet).
    duplicate_status: ProposalStatus | None = None


async def submit(
    client: Client,
    proposal: Proposal,
    task_queue: str,
    policy: Policy,
    *,
    search_attributes: bool = True,
    channel: Channel | None = None,
    claims_namespace: str | None = None,
) -> Submission:
    """Start the proposal's workflow, return the existing one for the same proposal_id, or
    attach the proposal to an open one for the same problem (policy `dedup`).

    The workflow id is the proposal id, so a resubmission can never start a second execution.
    `channel` (http, sdk, mcp, cli) is how the proposal arrived, for the audit trail.
    """
    digest = body_digest(proposal)
    service = policy.canonical_service(proposal.target.service) or proposal.target.service
    key = policy.dedup.key_of(proposal, service)
    if key is not None:
        # Claims live in a namespace of their own (INTERLOCK_DEDUP_NAMESPACE): no clutter in the list.
        attached = await claim_or_attach_to(client, proposal, key, task_queue, policy, claims_namespace)
        if attached is not None:
            return Submission(
                proposal.proposal_id,
                attached.owner,
                False,
                None,
                duplicate_of=attached.owner,
                duplicate_status=attached.status,
            )
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(search.SA_STATUS, ProposalStatus.SUBMITTED.value),
            SearchAttributePair(search.SA_ACTION, proposal.action),
            SearchAttributePair(search.SA_SERVICE, service),
            SearchAttributePair(search.SA_RECOMMENDER, proposal.recommender),
        ]
        + ([SearchAttributePair(search.SA_INCIDENT, proposal.incident)] if proposal.incident else [])
    )
    try:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            RemediationInput(
                proposal=proposal,
                submitted_at=datetime.now(UTC),
                search_attributes=search_attributes,
                channel=channel,
            ),
            id=proposal.proposal_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=attributes if search_attributes else None,
            memo={"body_sha256": digest},
            # The Web UI's list line and its first details, before the checks set current ones.
            static_summary=static_summary(proposal, service),
            static_details=static_details(proposal, service),
        )
        return Submission(proposal.proposal_id, handle.id, True, handle.result_run_id)
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(proposal.proposal_id)
        desc = await handle.describe()
        existing = await desc.memo_value("body_sha256", default=None)
        if existing != digest:
            raise ProposalConflict(
                f"proposal_id {proposal.proposal_id!r} is already used by a different proposal"
            ) from None
        return Submission(proposal.proposal_id, handle.id, False, desc.run_id)


async def get_state(client: Client, proposal_id: str) -> ProposalState:
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(proposal_id)
    try:
        return await handle.query(Query.STATUS, result_type=ProposalState)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ProposalNotFound(f"no proposal {proposal_id!r}") from None
        raise
    except WorkflowQueryFailedError as exc:
        # A run whose input was refused (rejected_by_checks before it had a proposal) has no state.
        raise ProposalNotFound(f"{proposal_id!r} is not a proposal: {exc.message}") from None


async def wait_until_settled(
    client: Client, proposal_id: str, timeout: float = 300.0, interval: float = 0.25
) -> ProposalState:
    """Wait until the automatic stages are done (awaiting a person, or final)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            state = await get_state(client, proposal_id)
            if not state.status.is_automatic_stage:
                return state
        except RPCError as exc:
            # The first workflow task may not have run yet: the query has nothing to answer.
            if "not started" not in str(exc).lower() and exc.status != RPCStatusCode.FAILED_PRECONDITION:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"proposal {proposal_id} still in automatic stages after {timeout}s")
        await asyncio.sleep(interval)


async def wait_until_final(client: Client, proposal_id: str, timeout: float = 600.0) -> ProposalState:
    handle = client.get_workflow_handle(proposal_id, result_type=ProposalState)
    return await asyncio.wait_for(handle.result(), timeout)


async def decide(client: Client, proposal_id: str, decision: str, inp: DecisionInput) -> DecisionResult:
    from temporalio.client import WorkflowUpdateFailedError

    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(proposal_id)
    try:
        return await handle.execute_update(Update(decision), inp, result_type=DecisionResult)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise DecisionRefused(message) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise DecisionRefused(f"no open proposal {proposal_id!r} (it may be final)") from None
        raise


async def list_proposals(client: Client, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    query = f"WorkflowType = '{WORKFLOW_TYPE}'"
    if status:
        if status not in {s.value for s in ProposalStatus}:
            raise ValueError(f"unknown status {status!r}")
        query += f" AND {search.SA_STATUS.name} = '{status}'"
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        rows.append(
            {
                "proposal_id": wf.id,
                "status": attrs.get(search.SA_STATUS),
                "action": attrs.get(search.SA_ACTION),
                "service": attrs.get(search.SA_SERVICE),
                "risk_tier": attrs.get(search.SA_RISK_TIER),
                "recommender": attrs.get(search.SA_RECOMMENDER),
                "submitted_at": wf.start_time.isoformat() if wf.start_time else None,
            }
        )
    return rows


async def sign_decision(
    client: Client,
    keys_dir: Path,
    proposal_id: str,
    decision: str,
    approver: str,
    reason: str,
    lifetime: timedelta | None = None,
) -> str:
    """A token for `decision` on the proposal's current plan, signed with approver's key file."""
    from interlock.keys import key_path
    from interlock.models import DecisionKind
    from interlock.signing import load_private_key, sign

    path = key_path(keys_dir, approver)
    if not path.exists():
        raise DecisionRefused(f"no key for {approver!r} at {path} (interlock keys generate {approver})")
    state = await get_state(client, proposal_id)
    if not state.plan_hash:
        raise DecisionRefused(f"proposal {proposal_id} has no plan to sign yet ({state.status.value})")
    return sign(
        load_private_key(path),
        proposal_id=state.proposal.proposal_id,
        workflow_id=state.workflow_id,
        plan_hash=state.plan_hash,
        decision=DecisionKind(decision),
        approver=approver,
        reason=reason,
        now=datetime.now(UTC),
        **({"lifetime": lifetime} if lifetime is not None else {}),
    )


async def broadcast(client: Client, signal: str, arg: Any, query: str) -> int:
    """Signal every open proposal matching a visibility query; returns how many."""
    count = 0
    full = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
    if query:
        full += f" AND {query}"
    async for wf in client.list_workflows(full):
        try:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).signal(signal, arg)
            count += 1
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:  # closed meanwhile: nothing to pause
                raise
    return count

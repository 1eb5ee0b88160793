"""Reading proposals back: a recommender sees its own proposals and nobody else's."""

from __future__ import annotations

import asyncio
import logging

from temporalio.service import RPCError, RPCStatusCode

from interlock import search
from interlock.api.errors import ApiError
from interlock.api.intake import Intake
from interlock.api.responses import ProposalList, ProposalSummary, ProposalView
from interlock.models import PROPOSAL_ID, SAFE_NAME, ProposalStatus
from interlock.proposals import WORKFLOW_TYPE, ProposalNotFound, get_state

log = logging.getLogger(__name__)

# A status query needs a worker to answer; without one it would hang until the RPC deadline.
QUERY_TIMEOUT_SECONDS = 5.0


async def read_proposal(intake: Intake, recommender: str, proposal_id: str) -> ProposalView:
    if not PROPOSAL_ID.match(proposal_id):
        # No workflow can have such an id: spare Temporal the lookup.
        raise _not_found(proposal_id)
    client = await intake.client()
    try:
        desc = await client.get_workflow_handle(proposal_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(proposal_id) from None
        raise intake.rpc_error(exc) or exc from None
    # Ownership from the search attribute set at start: it needs no worker. Only a recommender
    # whose duplicate was attached may read another's proposal: that is checked on the state.
    attrs = desc.typed_search_attributes
    owner = attrs.get(search.SA_RECOMMENDER) or ""
    try:
        state = await asyncio.wait_for(get_state(client, proposal_id), QUERY_TIMEOUT_SECONDS)
    except ProposalNotFound:
        raise _not_found(proposal_id) from None
    except TimeoutError:
        log.warning("status query of %s unanswered: is a worker running?", proposal_id)
        _check_owner(recommender, owner, proposal_id)
        return _early_view(proposal_id, attrs.get(search.SA_STATUS))
    except RPCError as exc:
        if unavailable := intake.rpc_error(exc):
            raise unavailable from None
        if "not started" in str(exc).lower() or exc.status == RPCStatusCode.FAILED_PRECONDITION:
            # Its first workflow task has not run yet: nothing but the attributes to tell.
            _check_owner(recommender, owner, proposal_id)
            return _early_view(proposal_id, attrs.get(search.SA_STATUS))
        raise
    if recommender not in {d.recommender for d in state.duplicates}:
        _check_owner(recommender, state.proposal.recommender, proposal_id)
    return ProposalView.of(state)


async def list_proposals(
    intake: Intake, recommender: str, status: ProposalStatus | None, limit: int
) -> ProposalList:
    if not SAFE_NAME.match(recommender):
        # Token names are checked when issued; never splice anything else into a query.
        return ProposalList(proposals=[])
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND {search.SA_RECOMMENDER.name} = '{recommender}'"
    if status is not None:
        query += f" AND {search.SA_STATUS.name} = '{status.value}'"
    client = await intake.client()
    rows: list[ProposalSummary] = []
    try:
        async for wf in client.list_workflows(query, limit=limit):
            attrs = wf.typed_search_attributes
            rows.append(
                ProposalSummary(
                    proposal_id=wf.id,
                    status=attrs.get(search.SA_STATUS),
                    action=attrs.get(search.SA_ACTION),
                    service=attrs.get(search.SA_SERVICE),
                    risk_tier=attrs.get(search.SA_RISK_TIER),
                    recommender=attrs.get(search.SA_RECOMMENDER),
                    submitted_at=wf.start_time.isoformat() if wf.start_time else None,
                )
            )
    except RPCError as exc:
        raise intake.rpc_error(exc) or exc from None
    return ProposalList(proposals=rows)


def _early_view(proposal_id: str, status: str | None) -> ProposalView:
    """What the search attributes tell before (or without) a worker answering the query."""
    try:
        return ProposalView(proposal_id=proposal_id, status=ProposalStatus(status or "submitted"))
    except ValueError:
        return ProposalView(proposal_id=proposal_id, status=ProposalStatus.SUBMITTED)


def _not_found(proposal_id: str) -> ApiError:
    return ApiError(404, f"no proposal {proposal_id!r}")


def _check_owner(recommender: str, owner: str, proposal_id: str) -> None:
    if owner != recommender:
        raise ApiError(
            403,
            f"proposal {proposal_id!r} belongs to another recommender",
            [f"recommender: {recommender!r} may read only its own proposals"],
        )

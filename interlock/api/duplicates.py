"""Finding an open proposal for the same incident, so a second recommender's copy can attach to it.

Used only once Temporal has the `InterlockIncident` search attribute (added with the workflow
change that accepts attached duplicates); until then every proposal starts its own workflow.
"""

from __future__ import annotations

import logging
import re
import time

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from interlock import search
from interlock.models import Proposal
from interlock.policy import Policy
from interlock.proposals import WORKFLOW_TYPE

log = logging.getLogger(__name__)

INCIDENT_ATTRIBUTE = "InterlockIncident"
# Values are spliced into a visibility query: anything that could close the quote is skipped
# (no dedup) rather than escaped, since the query language's escaping is not documented.
_QUERY_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/#+-]{0,127}$")
_ATTRIBUTE_TTL_SECONDS = 60.0
_attribute_seen: dict[tuple[int, str], tuple[float, bool]] = {}


async def has_incident_attribute(client: Client) -> bool:
    """Whether the namespace has `InterlockIncident`; cached a minute per client."""
    key = (id(client), client.namespace)
    cached = _attribute_seen.get(key)
    now = time.monotonic()
    if cached and cached[0] > now:
        return cached[1]
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    present = INCIDENT_ATTRIBUTE in response.custom_attributes
    _attribute_seen[key] = (now + _ATTRIBUTE_TTL_SECONDS, present)
    return present


def duplicate_query(proposal: Proposal, service: str) -> str | None:
    """The visibility query for running proposals of the same action, service and incident."""
    values = (proposal.action, service, proposal.incident or "")
    if not all(_QUERY_SAFE.match(v) for v in values):
        return None
    return (
        f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' "
        f"AND {search.SA_ACTION.name} = '{proposal.action}' "
        f"AND {search.SA_SERVICE.name} = '{service}' "
        f"AND {INCIDENT_ATTRIBUTE} = '{proposal.incident}'"
    )


async def find_open_duplicate(client: Client, proposal: Proposal, policy: Policy | None = None) -> str | None:
    """The id of another running proposal for the same incident, or None.

    Best effort: dedup saves approvers a second look, so a visibility failure must not
    refuse the proposal.
    """
    if not proposal.incident:
        return None
    service = (
        policy.canonical_service(proposal.target.service) if policy else None
    ) or proposal.target.service
    query = duplicate_query(proposal, service)
    if query is None:
        return None
    try:
        if not await has_incident_attribute(client):
            return None
        async for wf in client.list_workflows(query, limit=5):
            if wf.id != proposal.proposal_id:
                return wf.id
    except RPCError as exc:
        log.warning("duplicate lookup for %s failed: %s", proposal.proposal_id, exc)
    return None

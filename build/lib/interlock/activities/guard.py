"""Activities that guard the trust boundary: the policy re-derived for a continued run, and who
asked Temporal to cancel a proposal."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from interlock.contracts import Activity
from interlock.governance import Governance, GovernanceCheck
from interlock.models import CancelRequest, Proposal
from interlock.policy import load_policy, validate_against_policy
from interlock.settings import Settings


class GuardActivities:
    def __init__(self, settings: Settings, client: Client):
        self.settings = settings
        self.client = client

    @activity.defn(name=Activity.GOVERNANCE_FOR)
    async def governance_for(self, proposal: Proposal) -> GovernanceCheck:
        """Who may decide, from the policy in force now: a continued run never adopts the rules
        its input carries."""
        policy = load_policy(self.settings.effective_policy_file)
        errors = validate_against_policy(proposal, policy)
        service = policy.canonical_service(proposal.target.service)
        if not errors and service is not None:
            errors = policy.scope_violations(proposal, service)
        if errors or service is None:
            return GovernanceCheck(ok=False, reasons=errors, policy_version=policy.version_id)
        governance = Governance.from_policy(
            policy,
            proposal.action,
            proposal.target.environment,
            service,
            proposal.recommender,
            datetime.now(UTC),
        )
        return GovernanceCheck(ok=True, reasons=[], policy_version=policy.version_id, governance=governance)

    @activity.defn(name=Activity.CANCEL_REQUESTED_BY)
    async def cancel_requested_by(self, req: CancelRequest) -> str:
        """The identity on the cancellation request in the run's history. Clients set it
        themselves, so it is reported as the client said, not as a verified person."""
        handle = self.client.get_workflow_handle(req.workflow_id, run_id=req.run_id)
        identity, reason = "", ""
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                attrs = event.workflow_execution_cancel_requested_event_attributes
                identity, reason = attrs.identity, attrs.cause
        who = f"client identity {identity!r} (as the client reported it)" if identity else "an unnamed client"
        return f"{who}{f': {reason}' if reason else ''}"

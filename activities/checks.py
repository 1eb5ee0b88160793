"""Checks activity: re-validates a proposal against the policy in force and checks its evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity

from interlock.governance import Assessment, Governance
from interlock.models import EvidenceCheck, EvidenceReport, Proposal, ServiceFacts
from interlock.policy import Policy, load_policy, validate_against_policy
from interlock.settings import Settings

# Clocks disagree a little; evidence from further in the future than this is refused.
CLOCK_SKEW = timedelta(minutes=5)


class ProposalChecks:
    def __init__(self, settings: Settings):
        self.settings = settings

    def policy(self) -> Policy:
        # Read on every check so an edited policy applies to the next proposal without a restart.
        return load_policy(self.settings.effective_policy_file)

    @activity.defn(name="check_proposal")
    async def check_proposal(self, proposal: Proposal) -> Assessment:
        policy = self.policy()
        errors = validate_against_policy(proposal, policy)
        if errors:
            return Assessment(ok=False, reasons=errors, policy_version=policy.version_id)
        service = policy.canonical_service(proposal.target.service)
        assert service is not None  # validate_against_policy refused unknown services
        violations = policy.scope_violations(proposal, service)
        if violations:
            return Assessment(
                ok=False,
                reasons=violations,
                policy_version=policy.version_id,
                security_violation=True,
            )
        action = policy.actions[proposal.action]
        now = datetime.now(UTC)
        evidence = check_evidence(proposal, policy, service, now)
        return Assessment(
            ok=evidence.ok,
            reasons=evidence.reasons,
            policy_version=policy.version_id,
            service=ServiceFacts(
                canonical=service,
                owner=policy.services[service].owner,
                dependents=policy.dependents(service),
            ),
            evidence=evidence,
            base_risk=action.base_risk,
            environment_risk=policy.environments[proposal.target.environment].risk,
            approval_timeout_seconds=(
                action.approval_timeout.total_seconds() if action.approval_timeout else None
            ),
            history_event_limit=self.settings.history_event_limit,
            governance=Governance.from_policy(
                policy,
                proposal.action,
                proposal.target.environment,
                service,
                proposal.recommender,
                now,
            ),
        )


def evidence_service(ref: str) -> str:
    """The service an evidence reference is about: its first path segment ('checkout-api/health')."""
    return ref.split("/", 1)[0]


def check_evidence(
    proposal: Proposal, policy: Policy, service: str, now: datetime
) -> EvidenceReport:
    action = policy.actions[proposal.action]
    items: list[EvidenceCheck] = []
    for item in proposal.evidence:
        age = (now - item.observed_at).total_seconds()
        source = action.evidence_sources.get(item.source)
        about = policy.canonical_service(evidence_service(item.ref))
        if source is None:
            ok, reason = False, f"source {item.source!r} is not approved for {proposal.action}"
        elif item.observed_at - now > CLOCK_SKEW:
            ok, reason = False, "observed_at is in the future"
        elif age > source.max_age.total_seconds():
            ok, reason = False, f"stale: {age:.0f}s old, maximum is {source.max_age}"
        elif about is None:
            ok, reason = (
                False,
                (f"refers to {evidence_service(item.ref)!r}, which is not a catalogued service"),
            )
        elif about != service:
            ok, reason = False, f"refers to {about!r}, not to the target {service!r}"
        else:
            ok, reason = True, "source approved, fresh, about the target"
        items.append(
            EvidenceCheck(
                source=item.source, ref=item.ref, ok=ok, reason=reason, age_seconds=round(age, 1)
            )
        )
    return EvidenceReport(ok=all(i.ok for i in items), items=items, checked_at=now)

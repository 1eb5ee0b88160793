"""Who may decide, and when a decision is enough: pure rules the approval gate applies.

The workflow holds a `Governance` snapshot taken from the policy when the proposal was
checked, so every decision on one proposal is judged by one policy version.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from interlock.models import (
    EvidenceReport,
    Pause,
    PlaybookResult,
    Proposal,
    ProposalState,
    RemediationInput,
    RiskTier,
    ServiceFacts,
)
from interlock.policy import ApprovalRule, Approver, Mode, Policy, RiskSettings
from interlock.risk import RiskInput
from interlock.signing import DEFAULT_TOKEN_LIFETIME

AUTO_APPROVER = "policy:auto"


class Governance(BaseModel):
    rules: dict[RiskTier, ApprovalRule]
    roster: dict[str, Approver]
    owner_group: str
    mode: Mode = Mode.APPROVE
    auto_max_tier: RiskTier = RiskTier.LOW
    auto_min_confidence: float = 0.9
    recommender_max_tier: RiskTier | None = None
    emergency_group: str = "emergency"
    freezes: list[str] = Field(default_factory=list)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    # The longest a signed token may be valid (expires_at - issued_at), from the policy.
    token_max_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        action: str,
        environment: str,
        service: str,
        recommender: str,
        now: datetime,
    ) -> Governance:
        mode = policy.mode_for(action, environment, service)
        scope = policy.recommenders.get(recommender)
        return cls(
            rules=policy.approval_rules,
            roster=policy.roster,
            owner_group=policy.services[service].owner,
            mode=mode.mode,
            auto_max_tier=mode.max_tier,
            auto_min_confidence=mode.min_confidence,
            recommender_max_tier=scope.max_tier if scope else None,
            emergency_group=policy.emergency_group,
            freezes=policy.active_freezes(now, action, environment),
            risk=policy.risk,
            token_max_lifetime=policy.token_max_lifetime,
        )

    def groups_of(self, approver: str) -> list[str]:
        entry = self.roster.get(approver)
        return list(entry.groups) if entry else []

    def may_decide(self, approver: str, tier: RiskTier, frozen: bool) -> str | None:
        """None if `approver` is among those who may decide on this tier, else why not."""
        rule = self.rules[tier]
        groups = set(self.groups_of(approver))
        allowed = set(rule.groups) if rule.groups else None
        if allowed is None or groups & allowed:
            return None
        if frozen and self.emergency_group in groups:
            return None
        return (
            f"{approver!r} (groups: {', '.join(sorted(groups)) or 'none'}) is outside the "
            f"groups that decide {tier.value} changes ({', '.join(sorted(allowed))})"
        )


def plan_hash(
    action: str,
    service: str,
    environment: str,
    parameters: dict[str, str],
    preview: PlaybookResult,
) -> str:
    """What an approval is bound to: the action, its inputs, the exact playbooks and the diff."""
    document = {
        "action": action,
        "service": service,
        "environment": environment,
        "parameters": dict(sorted(parameters.items())),
        "playbooks": preview.playbooks_digest,
        "preview": [[t.task, t.status, t.diff or ""] for t in preview.tasks],
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


class Assessment(BaseModel):
    """Everything the checks activity established: input to risk scoring and the gate."""

    ok: bool
    reasons: list[str]
    policy_version: str
    security_violation: bool = False
    service: ServiceFacts | None = None
    evidence: EvidenceReport | None = None
    base_risk: int = 0
    environment_risk: int = 0
    approval_timeout_seconds: float | None = None
    governance: Governance | None = None
    # The facts risk is scored from, gathered by the checks activity (None when refused).
    risk_input: RiskInput | None = None
    # The shortest max age of the cited sources: older than this, evidence is asked again
    # before execution.
    evidence_max_age_seconds: float | None = None
    # The action's settle time: how long the evidence may take to clear after a run.
    settle_seconds: float | None = None
    # The action's preview_retry: tries in all, and the wait before the second (then doubling).
    # None in histories from before it: one try.
    preview_attempts: int | None = None
    preview_backoff_seconds: float | None = None
    # The worker's INTERLOCK_HISTORY_EVENT_LIMIT, fixed in history for this proposal.
    history_event_limit: int | None = None
    # The policy's dedup key for this proposal: a duplicate is attached only when its key is the same.
    dedup_key: str | None = None


def risk_input_of(assessment: Assessment, proposal: Proposal) -> RiskInput:
    """The facts risk is scored from: gathered by the checks, or (histories recorded before the
    checks gathered them) rebuilt from the assessment's older fields."""
    if assessment.risk_input is not None:
        return assessment.risk_input
    assert assessment.service is not None
    evidence = assessment.evidence
    return RiskInput(
        action=proposal.action,
        base_risk=assessment.base_risk,
        environment=proposal.target.environment,
        environment_risk=assessment.environment_risk,
        service=assessment.service.canonical,
        dependents=assessment.service.dependents,
        confidence=proposal.confidence,
        evidence_total=len(evidence.items) if evidence else 0,
        evidence_confirmed=evidence.confirmed if evidence else 0,
    )


class GovernanceCheck(BaseModel):
    """The policy in force, re-derived for a proposal continued into a fresh run."""

    ok: bool
    reasons: list[str]
    policy_version: str
    governance: Governance | None = None


# Continue-as-new while awaiting approval past this many events (Temporal warns at 10,240).
DEFAULT_HISTORY_EVENT_LIMIT = 5000


class ApprovalWait(BaseModel):
    """The workflow's whole state, in one object: what it orchestrates with and what
    continue-as-new carries into a fresh run (and the fresh run re-checks, never adopts).

    Everything the gate decides on travels: decisions (bound to their plan hash), the nonces of
    signed tokens already used (a token cannot be replayed into the new run), pauses and deadlines.
    """

    state: ProposalState
    governance: Governance | None = None
    nonces: list[str] = Field(default_factory=list)
    pauses: list[Pause] = Field(default_factory=list)
    approval_timeout_seconds: float | None = None
    escalate_at: datetime | None = None
    expire_at: datetime | None = None
    audit_seq: int = 0
    history_event_limit: int = DEFAULT_HISTORY_EVENT_LIMIT
    runs: int = 1
    # The checks' assessment (evidence ages, settle time) and the duplicates already attached.
    assessment: Assessment | None = None
    duplicate_ids: list[str] = Field(default_factory=list)


class RemediationRun(RemediationInput):
    """The workflow's input: a new proposal, or one continued from an earlier run."""

    continued: ApprovalWait | None = None

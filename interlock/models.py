"""Domain models of a remediation proposal and its lifecycle.

Pure pydantic v2: workflows import this module, so nothing here touches a database,
Ansible or the network.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

# Names that reach Ansible as extra vars or file names: no shell metacharacters, no
# Jinja, no path separators, no whitespace. Everything a proposal names must match.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
PROPOSAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _safe_name(value: str) -> str:
    if value.lower().startswith("ansible_"):
        raise ValueError("names starting with 'ansible_' are reserved")
    if not SAFE_NAME.match(value):
        raise ValueError(
            "must be 1-63 letters, digits, '.', '_' or '-' (no spaces, shell "
            "metacharacters, template braces or path separators)"
        )
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]


class ProposalStatus(StrEnum):
    SUBMITTED = "submitted"
    CHECKING = "checking"
    PREVIEWING = "previewing"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    ROLLING_BACK = "rolling_back"
    # Final statuses.
    COMPLETED = "completed"
    COMPLETED_UNRESOLVED = "completed_unresolved"
    REJECTED = "rejected"
    REJECTED_BY_CHECKS = "rejected_by_checks"
    EXPIRED = "expired"
    ROLLED_BACK = "rolled_back"
    NEEDS_MANUAL_INTERVENTION = "needs_manual_intervention"
    SHADOWED = "shadowed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def is_automatic_stage(self) -> bool:
        """Stages the workflow passes through on its own before it needs anyone."""
        return self in (self.SUBMITTED, self.CHECKING, self.PREVIEWING)


FINAL_STATUSES = frozenset(
    {
        ProposalStatus.COMPLETED,
        ProposalStatus.COMPLETED_UNRESOLVED,
        ProposalStatus.REJECTED,
        ProposalStatus.REJECTED_BY_CHECKS,
        ProposalStatus.EXPIRED,
        ProposalStatus.ROLLED_BACK,
        ProposalStatus.NEEDS_MANUAL_INTERVENTION,
        ProposalStatus.SHADOWED,
    }
)


class RiskTier(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(RiskTier).index(self)


class DecisionKind(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Stage(StrEnum):
    """Which of an action's playbooks runs, and how."""

    PREVIEW = "preview"
    EXECUTE = "execute"
    VERIFY = "verify"
    ROLLBACK = "rollback"
    VERIFY_ROLLBACK = "verify_rollback"


# --- What a recommender submits ------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Target(_Strict):
    service: Annotated[str, Field(min_length=1, max_length=128)]
    environment: SafeName


class EvidenceItem(_Strict):
    source: SafeName
    ref: Annotated[str, Field(min_length=1, max_length=512)]
    observed_at: AwareDatetime
    summary: Annotated[str, Field(max_length=2000)] = ""


class Proposal(_Strict):
    """A remediation proposed by an AI recommender. Validated before any workflow starts."""

    proposal_id: Annotated[str, Field(pattern=PROPOSAL_ID.pattern)]
    recommender: SafeName
    model_version: Annotated[str, Field(min_length=1, max_length=128)]
    action: SafeName
    target: Target
    parameters: dict[SafeName, SafeName] = Field(default_factory=dict)
    rationale: Annotated[str, Field(min_length=1, max_length=4000)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]
    incident: Annotated[str, Field(max_length=128)] | None = None
    evidence: Annotated[list[EvidenceItem], Field(min_length=1, max_length=20)]


# --- What the workflow works out --------------------------------------------------------


class EvidenceCheck(BaseModel):
    source: str
    ref: str
    ok: bool
    reason: str
    age_seconds: float | None = None
    fetched: bool = False
    observed: dict[str, Any] | None = None


class EvidenceReport(BaseModel):
    ok: bool
    items: list[EvidenceCheck]
    checked_at: datetime

    @property
    def reasons(self) -> list[str]:
        return [f"{i.source} {i.ref}: {i.reason}" for i in self.items if not i.ok]


class RiskFactor(BaseModel):
    name: str
    contribution: int
    detail: str


class RiskAssessment(BaseModel):
    score: int
    tier: RiskTier
    factors: list[RiskFactor]


class ServiceFacts(BaseModel):
    """What the service catalog says about the proposal's (canonical) target."""

    canonical: str
    owner: str
    dependents: list[str]


class Assessment(BaseModel):
    """Everything the checks activity established, as the workflow's input to risk and approval."""

    ok: bool
    reasons: list[str]
    policy_version: str
    service: ServiceFacts | None = None
    evidence: EvidenceReport | None = None
    base_risk: int = 0
    environment_risk: int = 0
    approval_timeout_seconds: float = 86400.0
    roster: dict[str, list[str]] = Field(default_factory=dict)


class TaskResult(BaseModel):
    host: str
    task: str
    status: str  # ok, changed, failed, skipped, unreachable
    changed: bool = False
    diff: str | None = None
    msg: str | None = None
    duration_seconds: float | None = None


class PlaybookRun(BaseModel):
    proposal_id: str
    action: str
    stage: Stage
    service: str
    parameters: dict[str, str]
    facts: dict[str, str] = Field(default_factory=dict)


class PlaybookResult(BaseModel):
    stage: Stage
    playbook: str
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    ok: bool
    tasks: list[TaskResult] = Field(default_factory=list)
    facts: dict[str, str] = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime
    error: str | None = None

    @property
    def changed_tasks(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.changed]


class DecisionInput(BaseModel):
    """Payload of the `approve` and `reject` Updates: what a person types into the UI."""

    model_config = ConfigDict(extra="forbid")

    approver: str
    reason: str = ""


class DecisionRecord(BaseModel):
    decision: DecisionKind
    approver: str
    reason: str
    at: datetime
    groups: list[str] = Field(default_factory=list)


class DecisionResult(BaseModel):
    proposal_id: str
    decision: DecisionKind
    approver: str
    status: ProposalStatus


class TimelineEntry(BaseModel):
    at: datetime
    status: ProposalStatus
    note: str = ""


class ProposalState(BaseModel):
    """The whole state of one proposal: the `status` query's answer and the workflow's result."""

    proposal: Proposal
    workflow_id: str
    status: ProposalStatus
    submitted_at: datetime
    policy_version: str | None = None
    service: ServiceFacts | None = None
    evidence: EvidenceReport | None = None
    risk: RiskAssessment | None = None
    preview: PlaybookResult | None = None
    decisions: list[DecisionRecord] = Field(default_factory=list)
    execution: PlaybookResult | None = None
    verification: PlaybookResult | None = None
    rollback: PlaybookResult | None = None
    rollback_verification: PlaybookResult | None = None
    reasons: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class RemediationInput(BaseModel):
    proposal: Proposal
    submitted_at: datetime

"""Domain models of a remediation proposal and its lifecycle.

Pure pydantic v2: workflows import this module, so nothing here touches a database,
Ansible or the network.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
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

# A fact a run playbook reports about one host (interlock/facts.py checks it against the
# action's declaration); `HostFacts` is inventory host -> fact name -> value.
FactValue = str | int | bool | list[str] | None
HostFacts = dict[str, dict[str, FactValue]]


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
    # The preview could not run for infrastructure (a host unreachable, SSH refused), after the
    # action's `preview_retry` attempts: nothing was judged, so no mark on the recommender.
    PREVIEW_FAILED = "preview_failed"
    # Someone asked Temporal to cancel the workflow (CLI, SDK or the Web UI) before execution.
    CANCELLED = "cancelled"

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
        ProposalStatus.PREVIEW_FAILED,
        ProposalStatus.CANCELLED,
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


# A change and the check that follows it: run in one Ansible run unless the action says otherwise.
CHECK_OF = {Stage.EXECUTE: Stage.VERIFY, Stage.ROLLBACK: Stage.VERIFY_ROLLBACK}

# --- What a recommender submits ------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Target(_Strict):
    service: Annotated[str, Field(min_length=1, max_length=128)]
    environment: SafeName
    # Narrows the change to these inventory hosts of the service (checked against the catalog);
    # None: every host the catalog lists for the service in this environment.
    hosts: Annotated[list[SafeName], Field(min_length=1, max_length=200)] | None = None


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
    """One evidence item as Interlock found it at its source.

    `fetched`: the source gave an answer that settles the item (a silenced or inhibited
    alert does not: `suppressed`, with `suppressed_by` naming the silences and inhibiting
    alerts); `supports`: its answer shows what the item claims; `ok` (confirmed): both, from
    an approved source, fresh enough. `observed` is what the source said, trimmed for the
    record and without credentials. `check` is the policy check the ref cites;
    `settle_seconds` how long that check can take to clear after a fix.
    """

    source: str
    ref: str
    ok: bool
    reason: str
    age_seconds: float | None = None
    fetched: bool = False
    supports: bool = False
    observed: dict[str, Any] | None = None
    source_time: datetime | None = None
    attempts: int = 0
    check: str = ""
    suppressed: bool = False
    suppressed_by: list[str] = Field(default_factory=list)
    settle_seconds: float | None = None


class EvidenceReport(BaseModel):
    ok: bool
    items: list[EvidenceCheck]
    checked_at: datetime

    @property
    def reasons(self) -> list[str]:
        return [f"{i.source} {i.ref}: {i.reason}" for i in self.items if not i.ok]

    @property
    def confirmed(self) -> int:
        return sum(i.ok for i in self.items)


class EvidenceRecheck(BaseModel):
    """Ask the sources again about evidence that was confirmed: before execution (does it
    still hold?) or after it (has it cleared?)."""

    proposal: Proposal
    service: str
    # Only the items that were confirmed at the check are asked about again.
    items: list[EvidenceItem]
    # After execution: keep asking until every item has cleared or this much time passed.
    settle_seconds: float = 0.0


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
    # Histories from before per-host facts: one set of facts for the whole run (ignored now).
    facts: dict[str, str] = Field(default_factory=dict)
    # What the run playbook reported per host, handed to verify and rollback as `interlock_facts`.
    host_facts: HostFacts = Field(default_factory=dict)
    # For execution: the playbook tree digest that was approved; refuse to run anything else.
    expected_digest: str | None = None
    # The proposal's environment: where the catalog's hosts are looked up ("" in old histories).
    environment: str = ""
    # The inventory hosts this run is limited to (Ansible's --limit, built from names only);
    # None: the proposal's target hosts, or every host the catalog lists.
    hosts: list[str] | None = None
    # The rollout batch this run belongs to (0-based), for the record and the artifacts' names.
    batch: int | None = None


class RolloutPlan(BaseModel):
    """What a preview established about the fleet: the hosts, the batches they change in, and the
    action's rollout and stage-timeout settings, all bound by the plan hash."""

    hosts: list[str] = Field(default_factory=list)
    # The service's whole fleet in this environment, as the catalog lists it (risk: the share).
    fleet: list[str] = Field(default_factory=list)
    batches: list[list[str]] = Field(default_factory=list)
    max_failed: int = 0
    pause_seconds: float = 0.0
    # Stage name -> seconds a playbook of that stage may run (the policy's `timeouts`).
    timeouts: dict[str, float] = Field(default_factory=dict)
    # The action's `verify_separately`: verify (and a rollback's check) in an Ansible run of its
    # own, instead of in the same run as the change it checks.
    verify_separately: bool = False


class BatchStatus(StrEnum):
    PENDING = "pending"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    # Never started: an earlier batch failed (or the rollout was stopped) first.
    NOT_RUN = "not_run"


class HostResult(BaseModel):
    """One inventory host in one batch: how its last stage ended, and why when it failed."""

    host: str
    stage: Stage
    status: str  # changed, ok, failed, unreachable, skipped
    changed: bool = False
    reason: str | None = None


# The status of a run whose declared facts were missing or not of their declared type.
FACTS_REFUSED = "facts_refused"


class PlaybookResult(BaseModel):
    stage: Stage
    playbook: str
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    ok: bool
    tasks: list[TaskResult] = Field(default_factory=list)
    # Histories from before per-host facts: Ansible's aggregate set_stats (never read now).
    facts: dict[str, str] = Field(default_factory=dict)
    # The action's declared facts as each host reported them (its own set_stats result).
    host_facts: HostFacts = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    # sha256 over the playbook tree and inventory that ran: part of the plan an approval binds.
    playbooks_digest: str = ""
    # A preview's hosts, batches and settings (None in histories from before the fleet).
    plan: RolloutPlan | None = None
    # A rolling execution: one entry per batch, in order (empty for a single run).
    batches: list[BatchResult] = Field(default_factory=list)

    @property
    def changed_tasks(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.changed]


class ChangeResult(BaseModel):
    """A change and its check from one Ansible run: execute then verify, or a rollback then its
    verification. Each stage's result is kept apart; `check` is None when the change did not
    succeed (the check's play then never ran, or ran only on the hosts that succeeded)."""

    change: PlaybookResult
    check: PlaybookResult | None = None


class BatchResult(BaseModel):
    """One batch of a rolling execution: its hosts, where it stands, and each host's result."""

    index: int
    hosts: list[str]
    status: BatchStatus = BatchStatus.PENDING
    results: list[HostResult] = Field(default_factory=list)
    execution: PlaybookResult | None = None
    verification: PlaybookResult | None = None
    rollback: PlaybookResult | None = None
    rollback_verification: PlaybookResult | None = None


class DecisionInput(BaseModel):
    """Payload of the `approve` and `reject` Updates: what a person types into the UI."""

    model_config = ConfigDict(extra="forbid")

    approver: str = ""
    reason: str = ""
    # A signed approval token (`interlock sign`); approver and reason then come from it.
    token: str | None = None


class DecisionRecord(BaseModel):
    decision: DecisionKind
    approver: str
    reason: str
    at: datetime
    groups: list[str] = Field(default_factory=list)
    signed: bool = False
    human: bool = True
    plan_hash: str | None = None
    # The signed token behind a signed decision: a continued run verifies it again.
    token: str | None = None


class DecisionResult(BaseModel):
    proposal_id: str
    decision: DecisionKind
    approver: str
    status: ProposalStatus


class TimelineEntry(BaseModel):
    at: datetime
    status: ProposalStatus
    note: str = ""


class Duplicate(BaseModel):
    """A later proposal for the same problem, attached to the open one instead of starting its own.

    Its evidence is checked like any proposal's; it never asks for a second approval.
    """

    proposal_id: str
    recommender: str
    model_version: str
    confidence: float
    received_at: datetime
    evidence: EvidenceReport | None = None  # None while its checks run
    ok: bool | None = None
    reasons: list[str] = Field(default_factory=list)


class AttachDuplicate(BaseModel):
    """Payload of the `add_duplicate` signal."""

    proposal: Proposal
    received_at: datetime


class DedupClaim(BaseModel):
    """Input of the claim workflow that holds a dedup key for the proposal that owns it."""

    key: str
    owner: str
    window: timedelta


class ProposalState(BaseModel):
    """The whole state of one proposal: the `status` query's answer and the workflow's result."""

    proposal: Proposal
    workflow_id: str
    status: ProposalStatus
    submitted_at: datetime
    policy_version: str | None = None
    service: ServiceFacts | None = None
    evidence: EvidenceReport | None = None
    # The evidence asked again just before execution (when older than its max age) and
    # after it (has the condition cleared within the action's settle time?).
    evidence_recheck: EvidenceReport | None = None
    evidence_after: EvidenceReport | None = None
    risk: RiskAssessment | None = None
    preview: PlaybookResult | None = None
    decisions: list[DecisionRecord] = Field(default_factory=list)
    execution: PlaybookResult | None = None
    verification: PlaybookResult | None = None
    rollback: PlaybookResult | None = None
    rollback_verification: PlaybookResult | None = None
    reasons: list[str] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    plan_hash: str | None = None
    mode: str = "approve"
    waiting_for: str | None = None
    escalated: bool = False
    pauses: list[Pause] = Field(default_factory=list)
    freezes: list[str] = Field(default_factory=list)
    # Proposals attached as duplicates (the first MAX_RECORDED_DUPLICATES in full); all counted.
    duplicates: list[Duplicate] = Field(default_factory=list)
    duplicate_count: int = 0

    def rejected_decision_pending(self) -> bool:
        return self.status is ProposalStatus.REJECTED


class PauseScope(BaseModel):
    """What a kill switch covers: everything, or one action, recommender or service."""

    model_config = ConfigDict(frozen=True)

    all: bool = False
    action: str | None = None
    recommender: str | None = None
    service: str | None = None

    def covers(self, action: str, recommender: str, service: str) -> bool:
        return self.all or self.action == action or self.recommender == recommender or self.service == service

    def describe(self) -> str:
        if self.all:
            return "all"
        parts = [
            f"{k}={v}"
            for k, v in (
                ("action", self.action),
                ("recommender", self.recommender),
                ("service", self.service),
            )
            if v
        ]
        return ",".join(parts)


class Pause(BaseModel):
    scope: PauseScope
    reason: str
    by: str
    at: datetime
    abort_running: bool = False


class PrecheckInput(BaseModel):
    proposal_id: str
    action: str
    environment: str
    service: str
    recommender: str
    playbooks_digest: str


class PrecheckResult(BaseModel):
    playbooks_digest: str
    freezes: list[str]
    pauses: list[Pause]


class Notification(BaseModel):
    kind: str  # awaiting_approval, escalation, outcome
    proposal_id: str
    text: str
    status: str
    group: str | None = None


class CancelRequest(BaseModel):
    """Which run to find the cancellation request of (who asked is in the history)."""

    workflow_id: str
    run_id: str


class Channel(StrEnum):
    """How a proposal reached Interlock; recorded in the audit trail and its metrics."""

    HTTP = "http"
    SDK = "sdk"
    MCP = "mcp"
    CLI = "cli"


class RemediationInput(BaseModel):
    proposal: Proposal
    submitted_at: datetime
    # None in histories from before the channel was recorded, so they still replay.
    channel: Channel | None = None
    # False only where the server has no Interlock search attributes (the time-skipping
    # test server); everywhere else status and tier are kept filterable in the UI.
    search_attributes: bool = True


PlaybookResult.model_rebuild()
ProposalState.model_rebuild()

"""What the MCP tools answer: the intake's views, plus the outcome an agent needs to plan on.

Every text in here that a recommender wrote (refs, summaries, reasons quoting them) is data,
never instructions: it is returned as JSON fields, not woven into prose.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from interlock.api.responses import ProposalList, ProposalView, SubmitAnswer
from interlock.models import (
    DecisionRecord,
    EvidenceReport,
    PlaybookResult,
    ProposalState,
    ProposalStatus,
    RiskAssessment,
)

_OUTCOMES: dict[ProposalStatus, str] = {
    ProposalStatus.COMPLETED: "Approved, executed and verified; the evidence that justified it has cleared.",
    ProposalStatus.COMPLETED_UNRESOLVED: (
        "Approved, executed and verified, but the evidence did not clear within the settle time: "
        "the problem may remain."
    ),
    ProposalStatus.REJECTED: "A person rejected it; nothing ran.",
    ProposalStatus.REJECTED_BY_CHECKS: (
        "Refused by the automatic checks (evidence not confirmed at its source, scope or policy); "
        "nothing ran and nobody was asked. See `reasons`."
    ),
    ProposalStatus.EXPIRED: "Nobody decided before the approval timeout; nothing ran.",
    ProposalStatus.ROLLED_BACK: "Approved and executed, but verification failed; the change was rolled back.",
    ProposalStatus.NEEDS_MANUAL_INTERVENTION: (
        "The change or its rollback did not finish cleanly; a person must look at the system."
    ),
    ProposalStatus.SHADOWED: "Shadow mode: assessed and recorded, never asked for and never run.",
    ProposalStatus.PREVIEW_FAILED: (
        "The preview could not reach a host (after its retries); nothing ran and nobody was asked. "
        "Not a verdict on the recommendation: it may be proposed again once the host is back."
    ),
}


class StageResult(BaseModel):
    """One Ansible stage as it ran."""

    stage: str
    ok: bool
    status: str
    changed_tasks: int
    error: str | None = None

    @classmethod
    def of(cls, run: PlaybookResult | None) -> StageResult | None:
        if run is None:
            return None
        return cls(
            stage=run.stage.value,
            ok=run.ok,
            status=run.status,
            changed_tasks=len(run.changed_tasks),
            error=run.error,
        )


class Outcome(BaseModel):
    """How a final proposal ended, and what ran."""

    status: ProposalStatus
    summary: str
    execution: StageResult | None = None
    verification: StageResult | None = None
    rollback: StageResult | None = None
    evidence_cleared: bool | None = Field(
        None, description="After execution: did every confirmed evidence item clear at its source?"
    )

    @classmethod
    def of(cls, state: ProposalState) -> Outcome:
        return cls(
            status=state.status,
            summary=_OUTCOMES.get(state.status, state.status.value),
            execution=StageResult.of(state.execution),
            verification=StageResult.of(state.verification),
            rollback=StageResult.of(state.rollback),
            evidence_cleared=_cleared(state.evidence_after) if state.evidence_after else None,
        )


def _cleared(report: EvidenceReport) -> bool:
    # As the workflow decides it: every source answered, and none still shows the condition.
    return all(i.fetched and not i.supports for i in report.items)


class ProposalDetail(BaseModel):
    """One proposal as an agent follows it: where it is, why, who decided, how it ended."""

    proposal_id: str
    status: ProposalStatus
    final: bool
    action: str | None = None
    service: str | None = None
    environment: str | None = None
    waiting_for: str | None = Field(None, description="Whose decision it waits for, while it waits.")
    risk: RiskAssessment | None = Field(None, description="Score, tier and the factors that make it up.")
    evidence: EvidenceReport | None = Field(
        None, description="Each item as its source answered: fetched, supports the claim, confirmed (ok)."
    )
    decisions: list[DecisionRecord] = Field(
        default_factory=list,
        description="Who approved or rejected, when, and whether the decision was signed.",
    )
    reasons: list[str] = Field(default_factory=list)
    duplicate_count: int = 0
    outcome: Outcome | None = Field(None, description="Set once the status is final.")

    @classmethod
    def of(cls, view: ProposalView, state: ProposalState | None) -> ProposalDetail:
        """From the intake's view (what the recommender may read) and, when the workflow answered,
        its state for the parts the view leaves out."""
        detail = cls(
            proposal_id=view.proposal_id,
            status=view.status,
            final=view.status.is_final,
            risk=view.risk,
            evidence=view.evidence,
            decisions=view.decisions,
            reasons=view.reasons,
            duplicate_count=view.duplicate_count,
        )
        if state is None:
            return detail
        return detail.model_copy(
            update={
                "action": state.proposal.action,
                "service": state.service.canonical if state.service else state.proposal.target.service,
                "environment": state.proposal.target.environment,
                "waiting_for": state.waiting_for,
                "outcome": Outcome.of(state) if state.status.is_final else None,
            }
        )


class ProposeResult(SubmitAnswer):
    """The answer to `propose_remediation`."""

    follow_id: str = Field(
        description="The proposal to follow (get_proposal, wait_for_outcome): duplicate_of, else this one."
    )
    replayed: bool = Field(
        False, description="True when this is the stored answer to an earlier identical call."
    )
    next_step: str

    @classmethod
    def of(cls, answer: SubmitAnswer, replayed: bool) -> ProposeResult:
        follow = answer.duplicate_of or answer.proposal_id
        if answer.duplicate_of:
            step = (
                f"An open proposal for the same problem exists: yours was attached to {follow} and "
                "needs no approval of its own. Follow it with wait_for_outcome."
            )
        else:
            step = (
                f"Interlock now confirms the evidence at its sources, scores the risk and previews the "
                f"change; then a person decides. Call wait_for_outcome with proposal_id {follow!r}."
            )
        return cls(**answer.model_dump(), follow_id=follow, replayed=replayed, next_step=step)


class WaitResult(BaseModel):
    """The answer to `wait_for_outcome`."""

    proposal: ProposalDetail
    started_as: ProposalStatus
    changed: bool
    timed_out: bool
    waited_seconds: float
    until: Literal["final", "change"]


class MyProposals(ProposalList):
    """The answer to `list_my_proposals`: only the caller's proposals, newest first."""

"""What the intake answers: the shapes `/openapi.json` documents for recommenders."""

from __future__ import annotations

from pydantic import BaseModel, Field

from interlock.models import (
    DecisionRecord,
    Duplicate,
    EvidenceReport,
    ProposalState,
    ProposalStatus,
    RiskAssessment,
)


class SubmitAnswer(BaseModel):
    """The answer to a submission; a retry with the same idempotency key gets it again verbatim."""

    proposal_id: str
    status: ProposalStatus
    created: bool = Field(
        description="False when the proposal was already submitted or attached as a duplicate."
    )
    duplicate_of: str | None = Field(
        None,
        description=(
            "The open proposal for the same problem this one was attached to: follow that one "
            "(`status` is its status)."
        ),
    )
    trace_id: str | None = Field(
        None, description="W3C trace id (hex) of the request that started the proposal."
    )


class ProposalView(BaseModel):
    """A recommender's view of its proposal: status, risk, decisions and why."""

    proposal_id: str
    status: ProposalStatus
    risk: RiskAssessment | None = None
    decisions: list[DecisionRecord] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    evidence: EvidenceReport | None = None
    duplicate_count: int = Field(0, description="Proposals attached to this one as duplicates.")
    duplicates: list[Duplicate] = Field(default_factory=list)

    @classmethod
    def of(cls, state: ProposalState) -> ProposalView:
        return cls(
            proposal_id=state.proposal.proposal_id,
            status=state.status,
            risk=state.risk,
            decisions=state.decisions,
            reasons=state.reasons,
            evidence=state.evidence,
            duplicate_count=state.duplicate_count,
            duplicates=state.duplicates,
        )


class ProposalSummary(BaseModel):
    proposal_id: str
    status: str | None = None
    action: str | None = None
    service: str | None = None
    risk_tier: str | None = None
    recommender: str | None = None
    submitted_at: str | None = None


class ProposalList(BaseModel):
    proposals: list[ProposalSummary]


class Health(BaseModel):
    status: str = "ok"

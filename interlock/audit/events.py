"""What an audit event is: its kinds and the typed input the workflow hands the recorder.

Pure pydantic: workflows import this module, so it must not touch a database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import to_jsonable_python


class EventKind(StrEnum):
    SUBMITTED = "submitted"
    EVIDENCE_CHECKED = "evidence_checked"
    RISK_ASSESSED = "risk_assessed"
    PREVIEW = "preview"
    # A preview retried after an infrastructure failure. data: attempt, attempts, ok, reason.
    PREVIEW_ATTEMPT = "preview_attempt"
    # data: decision (approve|reject), approver, reason, signed, human.
    DECISION = "decision"
    DECISION_REFUSED = "decision_refused"
    ESCALATED = "escalated"
    PAUSED = "paused"
    RESUMED = "resumed"
    EXECUTION_STARTED = "execution_started"
    # data: tasks (list), ok.
    EXECUTION_FINISHED = "execution_finished"
    VERIFICATION = "verification"
    ROLLBACK = "rollback"
    # status: the proposal's final status.
    FINAL = "final"
    # Scope violations and other things an auditor must look at.
    SECURITY = "security"
    DUPLICATE = "duplicate"
    # A difference `interlock audit reconcile` found between the store and Temporal's history.
    AUDIT_EXCEPTION = "audit_exception"
    # Earned autonomy: a recommender's model version moved to another mode for an action.
    # data: rule, from, to, direction (promoted|demoted), figures, reasons, trigger.
    MODE_CHANGED = "mode_changed"


# The statuses a `final` event may carry (ProposalStatus's final ones, kept as strings here
# so the audit trail does not change meaning if the workflow's enum grows).
FINAL_STATUSES = frozenset(
    {
        "completed",
        "completed_unresolved",
        "rejected",
        "rejected_by_checks",
        "expired",
        "rolled_back",
        "needs_manual_intervention",
        "shadowed",
        "preview_failed",
        "cancelled",
    }
)
# Final statuses that judge nothing about the recommendation: left out of a standing's figures.
UNJUDGED_STATUSES = frozenset({"preview_failed"})
# Final statuses that mean the recommendation was wrong: people or checks refused it, or it
# ran and did not fix the problem.
FALSE_RECOMMENDATION_STATUSES = frozenset(
    {"rejected", "rejected_by_checks", "rolled_back", "completed_unresolved"}
)

Text = Annotated[str, Field(min_length=1, max_length=256)]


class DecisionData(BaseModel):
    """The `data` of a `decision` event; metrics read `decision` and `human` from it."""

    model_config = ConfigDict(extra="allow")

    decision: Annotated[str, Field(pattern="^(approve|reject)$")]
    approver: str
    reason: str = ""
    signed: bool
    # False for approvals the policy grants on its own (approver "policy:auto").
    human: bool


class ExecutionFinishedData(BaseModel):
    model_config = ConfigDict(extra="allow")

    tasks: list[Any]
    ok: bool


class ModeChangedData(BaseModel):
    """The `data` of a `mode_changed` event; the standing is read back from `rule` and `to`."""

    model_config = ConfigDict(extra="allow")

    rule: Annotated[str, Field(min_length=1, max_length=800)]
    to: Annotated[str, Field(pattern="^(shadow|approve|auto)$")]
    direction: Annotated[str, Field(pattern="^(promoted|demoted)$")]
    figures: dict[str, Any]
    reasons: list[str]


class AuditEventIn(BaseModel):
    """One event as the workflow reports it; the store adds seq, prev_hash and hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Deterministic, chosen by the caller ("prop-0001/decision/2") so a retried write is
    # recognised and not recorded twice.
    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    proposal_id: Annotated[str, Field(min_length=1, max_length=128)]
    kind: EventKind
    at: AwareDatetime
    actor: Text | None = None
    status: Annotated[str, Field(max_length=64)] | None = None
    # Copied onto every event so metrics can group without joining back to `submitted`.
    recommender: Text | None = None
    model_version: Text | None = None
    action: Text | None = None
    service: Text | None = None
    risk_tier: Annotated[str, Field(max_length=32)] | None = None
    trace_id: Annotated[str, Field(max_length=128)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # Stored and hashed in UTC: the same instant must give the same hash on every database.
        return value.astimezone(UTC)

    @field_validator("data")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Refused here rather than at write time: NaN and infinities have no JSON form.
        try:
            json.dumps(to_jsonable_python(value), allow_nan=False)
        except ValueError as exc:
            raise ValueError(f"data must be plain JSON: {exc}") from None
        return value

    @model_validator(mode="after")
    def _kind_data(self) -> AuditEventIn:
        if self.kind is EventKind.DECISION:
            DecisionData.model_validate(self.data)
        elif self.kind is EventKind.EXECUTION_FINISHED:
            ExecutionFinishedData.model_validate(self.data)
        elif self.kind is EventKind.MODE_CHANGED:
            ModeChangedData.model_validate(self.data)
        elif self.kind is EventKind.FINAL and self.status not in FINAL_STATUSES:
            raise ValueError(
                f"a final event needs a final status ({', '.join(sorted(FINAL_STATUSES))}), "
                f"not {self.status!r}"
            )
        return self


class AuditBatch(BaseModel):
    """Events a workflow recorded back to back, written in one transaction (all or none)."""

    events: Annotated[list[AuditEventIn], Field(min_length=1, max_length=20)]

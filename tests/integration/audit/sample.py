"""Audit events for the tests, with times counted in seconds from a fixed start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from interlock.audit.events import AuditEventIn, EventKind

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def event(
    proposal_id: str,
    kind: EventKind | str,
    seconds: float = 0,
    n: int = 1,
    recommender: str | None = "r1",
    action: str | None = "restart_service",
    **fields: Any,
) -> AuditEventIn:
    kind = EventKind(kind)
    return AuditEventIn(
        event_id=f"{proposal_id}/{kind.value}/{n}",
        proposal_id=proposal_id,
        kind=kind,
        at=T0 + timedelta(seconds=seconds),
        recommender=recommender,
        model_version=f"{recommender}-v1" if recommender else None,
        action=action,
        service="checkout-api",
        risk_tier="low",
        **fields,
    )


def decision(
    proposal_id: str,
    seconds: float,
    decision: str = "approve",
    human: bool = True,
    n: int = 1,
    **kw: Any,
) -> AuditEventIn:
    approver = "alice" if human else "policy:auto"
    data = {"decision": decision, "approver": approver, "reason": "", "signed": human, "human": human}
    status = "rejected" if decision == "reject" else "executing"
    return event(proposal_id, "decision", seconds, n=n, actor=approver, status=status, data=data, **kw)


def final(proposal_id: str, seconds: float, status: str, **kw: Any) -> AuditEventIn:
    return event(proposal_id, "final", seconds, status=status, **kw)


def lifecycle(proposal_id: str, start: float = 0, **kw: Any) -> list[AuditEventIn]:
    """A proposal that was submitted, approved by a person, executed and completed."""
    return [
        event(proposal_id, "submitted", start, actor="opsgpt", status="submitted", **kw),
        event(proposal_id, "evidence_checked", start + 1, status="checking", data={"ok": True}, **kw),
        decision(proposal_id, start + 60, **kw),
        event(
            proposal_id,
            "execution_finished",
            start + 90,
            status="verifying",
            data={"tasks": [{"task": "restart", "status": "changed"}], "ok": True},
            **kw,
        ),
        final(proposal_id, start + 120, "completed", **kw),
    ]

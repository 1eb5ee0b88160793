"""A generated audit history (seeded), and the scorecard's figures worked out from it in Python.

The expected figures are counted here from the generated proposals themselves, independently of
the SQL the scorecard runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from interlock.audit.events import AuditEventIn, EventKind

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
PAIRS = [("opsgpt", "opsgpt-1"), ("opsgpt", "opsgpt-2"), ("copilot", "copilot-3")]
ACTIONS = ["restart_service", "rollback_deployment"]
SERVICES = ["checkout-api", "inventory-api"]
OUTCOMES = [
    "completed", "completed", "completed", "rejected", "rejected_by_checks", "rolled_back",
    "completed_unresolved", "shadowed", "shadowed", "expired", "preview_failed",
]  # fmt: skip


@dataclass
class Generated:
    proposal_id: str
    recommender: str
    model_version: str
    action: str
    service: str
    incident: str
    submitted: datetime
    status: str
    final_at: datetime
    decisions: list[tuple[datetime, str, bool]] = field(default_factory=list)
    escalated: bool = False


def generate(seed: int = 7, n: int = 60) -> tuple[list[Generated], list[AuditEventIn]]:
    rng = random.Random(seed)
    made: list[Generated] = []
    events: list[AuditEventIn] = []
    for i in range(n):
        recommender, model = rng.choice(PAIRS)
        action, service = rng.choice(ACTIONS), rng.choice(SERVICES)
        status = rng.choice(OUTCOMES)
        submitted = T0 + timedelta(minutes=37 * i)
        g = Generated(
            f"gen-{i:03d}", recommender, model, action, service, f"INC-{i // 2}", submitted,
            status, submitted + timedelta(seconds=rng.randint(200, 5000)),
        )  # fmt: skip
        if status in ("completed", "rolled_back", "completed_unresolved"):
            g.decisions.append(
                (submitted + timedelta(seconds=rng.randint(10, 150)), "approve", rng.random() < 0.8)
            )
        elif status == "rejected":
            g.decisions.append((submitted + timedelta(seconds=rng.randint(10, 150)), "reject", True))
        g.escalated = status == "expired" or rng.random() < 0.1
        made.append(g)
        events += events_of(g)
    return made, events


def events_of(g: Generated) -> list[AuditEventIn]:
    def ev(kind: EventKind, at: datetime, n: int, **kw: Any) -> AuditEventIn:
        return AuditEventIn(
            event_id=f"{g.proposal_id}/run/{n}/{kind.value}",
            proposal_id=g.proposal_id,
            kind=kind,
            at=at,
            recommender=g.recommender,
            model_version=g.model_version,
            action=g.action,
            service=g.service,
            **kw,
        )

    proposal = {"incident": g.incident, "target": {"service": g.service, "environment": "lab"}}
    out = [ev(EventKind.SUBMITTED, g.submitted, 1, status="submitted", data={"proposal": proposal})]
    n = 1
    if g.escalated:
        n += 1
        out.append(ev(EventKind.ESCALATED, g.submitted + timedelta(seconds=5), n, data={"group": "sre"}))
    for at, decision, human in g.decisions:
        n += 1
        approver = "alice" if human else "policy:auto"
        data = {"decision": decision, "approver": approver, "reason": "", "signed": False, "human": human}
        out.append(ev(EventKind.DECISION, at, n, actor=approver, data=data))
    n += 1
    out.append(ev(EventKind.FINAL, g.final_at, n, status=g.status, data={"status": g.status}))
    return out


def expected(made: list[Generated]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The scorecard's figures per pair and action, counted by hand from the generated proposals."""
    cards: dict[tuple[str, str, str], dict[str, Any]] = {}
    false = {"rejected", "rejected_by_checks", "rolled_back", "completed_unresolved"}
    for key in sorted({(g.recommender, g.model_version, g.action) for g in made}):
        mine = [g for g in made if (g.recommender, g.model_version, g.action) == key]
        human = [d for g in mine for d in g.decisions if d[2]]
        done = [g for g in mine if g.status == "completed"]
        judged = [g for g in mine if g.status != "preview_failed"]
        responded = [
            (g, min(d[0] for d in g.decisions if d[2])) for g in mine if any(d[2] for d in g.decisions)
        ]
        cards[key] = {
            "proposals": len(mine),
            "refused_by_checks": sum(g.status == "rejected_by_checks" for g in mine),
            "approved": sum(any(d[1] == "approve" for d in g.decisions) for g in mine),
            "rejected": sum(g.status == "rejected" for g in mine),
            "rolled_back": sum(g.status == "rolled_back" for g in mine),
            "completed_unresolved": sum(g.status == "completed_unresolved" for g in mine),
            "override_rate": (sum(d[1] == "reject" for d in human) / len(human)) if human else None,
            # Over the judged finals: a preview that could not reach a host judged nothing.
            "false_recommendation_rate": (sum(g.status in false for g in judged) / len(judged))
            if judged
            else None,
            "unjudged": len(mine) - len(judged),
            "mttr_mean_seconds": (
                sum((g.final_at - g.submitted).total_seconds() for g in done) / len(done) if done else None
            ),
            "first_response_mean_seconds": (
                sum((at - g.submitted).total_seconds() for g, at in responded) / len(responded)
                if responded
                else None
            ),  # fmt: skip
            "escalated": sum(g.escalated for g in mine),
            "shadow_confirmed": sum(g.status == "shadowed" for g in mine),
        }
    return cards

"""Deterministic, explainable risk scoring.

A pure function of facts Interlock gathered (never of the recommender's prose): the same
input always gives the same score, and every point of it is attributed to a factor.
"""

from __future__ import annotations

from pydantic import BaseModel

from interlock.models import RiskAssessment, RiskFactor
from interlock.policy import RiskSettings

BLAST_RADIUS_PER_DEPENDENT = 5
BLAST_RADIUS_CAP = 20
CONFIDENCE_WEIGHT = 20
UNCONFIRMED_EVIDENCE_WEIGHT = 15
SINGLE_SOURCE_PENALTY = 5


class RiskInput(BaseModel):
    action: str
    base_risk: int
    environment: str
    environment_risk: int
    service: str
    dependents: list[str]
    confidence: float
    evidence_total: int
    evidence_confirmed: int


def score_risk(facts: RiskInput, settings: RiskSettings) -> RiskAssessment:
    factors = [
        RiskFactor(
            name="action",
            contribution=facts.base_risk,
            detail=f"base risk of {facts.action}",
        ),
        RiskFactor(
            name="environment",
            contribution=facts.environment_risk,
            detail=f"environment {facts.environment}",
        ),
    ]
    blast = min(len(facts.dependents) * BLAST_RADIUS_PER_DEPENDENT, BLAST_RADIUS_CAP)
    factors.append(
        RiskFactor(
            name="blast_radius",
            contribution=blast,
            detail=(
                f"{len(facts.dependents)} dependent service(s) of {facts.service}"
                + (f": {', '.join(facts.dependents)}" if facts.dependents else "")
            ),
        )
    )
    factors.append(
        RiskFactor(
            name="confidence",
            contribution=round((1.0 - facts.confidence) * CONFIDENCE_WEIGHT),
            detail=f"model confidence {facts.confidence:.2f}",
        )
    )
    if facts.evidence_total == 0:
        evidence_points = UNCONFIRMED_EVIDENCE_WEIGHT
    else:
        unconfirmed = 1 - facts.evidence_confirmed / facts.evidence_total
        evidence_points = round(unconfirmed * UNCONFIRMED_EVIDENCE_WEIGHT)
        if facts.evidence_confirmed == 1:
            evidence_points += SINGLE_SOURCE_PENALTY
    factors.append(
        RiskFactor(
            name="evidence",
            contribution=evidence_points,
            detail=f"{facts.evidence_confirmed} of {facts.evidence_total} evidence item(s) confirmed",
        )
    )
    score = max(0, min(100, sum(f.contribution for f in factors)))
    return RiskAssessment(score=score, tier=settings.tier(score), factors=factors)

"""Risk scoring: each factor's contribution and the fact it names, one table row per input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from interlock.models import RiskTier
from interlock.policy import RiskSettings
from interlock.risk import RecentChange, RiskInput, TrackRecord, score_risk

SETTINGS = RiskSettings()
BASE: dict[str, Any] = {
    "action": "restart_service",
    "base_risk": 20,
    "environment": "lab",
    "environment_risk": 0,
    "service": "checkout-api",
    "dependents": [],
    "confidence": 1.0,
    "evidence_total": 2,
    "evidence_confirmed": 2,
    "recommender": "triage-bot",
    "track_record": TrackRecord(finished=0),
}
AT = datetime(2026, 11, 26, 10, 2, 13, tzinfo=UTC)


def factors(**changes: Any) -> dict[str, tuple[int, str]]:
    assessment = score_risk(RiskInput(**{**BASE, **changes}), SETTINGS)
    assert assessment.score == sum(f.contribution for f in assessment.factors)
    return {f.name: (f.contribution, f.detail) for f in assessment.factors}


@pytest.mark.parametrize(
    ("changes", "factor", "points", "detail"),
    [
        ({}, "action", 20, "base risk of restart_service"),
        ({"environment": "production", "environment_risk": 25}, "environment", 25, "environment production"),
        ({}, "blast_radius", 0, "0 dependent service(s) of checkout-api"),
        (
            {"dependents": ["mobile-bff", "storefront"]},
            "blast_radius",
            10,
            "2 dependent service(s) of checkout-api: mobile-bff, storefront",
        ),
        ({"dependents": [f"s{i}" for i in range(9)]}, "blast_radius", 20, "9 dependent service(s)"),
        ({"confidence": 0.5}, "confidence", 10, "model confidence 0.50"),
        ({}, "evidence", 0, "2 of 2 evidence item(s) confirmed at the source"),
        ({"evidence_confirmed": 1}, "evidence", 13, "1 of 2 evidence item(s) confirmed at the source"),
        ({"evidence_total": 1, "evidence_confirmed": 1}, "evidence", 5, "(a single confirmed source)"),
        ({"evidence_confirmed": 0}, "evidence", 15, "0 of 2"),
        ({}, "recent_change", 0, "no change by Interlock to checkout-api in the last 1h"),
        (
            {
                "recent_changes": [
                    RecentChange(proposal_id="p-1", action="restart_service", status="completed", at=AT),
                    RecentChange(
                        proposal_id="p-2",
                        action="rollback_deployment",
                        status="rolled_back",
                        at=AT + timedelta(minutes=5),
                    ),
                ]
            },
            "recent_change",
            10,
            "2 change(s) to checkout-api in the last 1h; latest rollback_deployment p-2 (rolled_back) "
            "at 2026-11-26 10:07:13 UTC",
        ),
        ({}, "track_record", 0, "triage-bot has no finished proposals in the last 30d"),
        (
            {"track_record": TrackRecord(finished=10, rejected=1, rolled_back=1, unresolved=1)},
            "track_record",
            9,
            "triage-bot: 3 of 10 finished proposal(s) in the last 30d went wrong "
            "(1 rejected, 1 rolled back, 1 completed_unresolved)",
        ),
        ({"track_record": TrackRecord(finished=2, rolled_back=2)}, "track_record", 30, "2 of 2"),
        (
            {"track_record": None, "track_record_error": "visibility query failed"},
            "track_record",
            0,
            "track record of triage-bot unavailable: visibility query failed",
        ),
        ({}, "freeze", 0, "no freeze window in force"),
        ({"freezes": ["black-friday"]}, "freeze", 15, "freeze window in force: black-friday"),
    ],
)
def test_each_factor_shows_its_contribution_and_fact(
    changes: dict[str, Any], factor: str, points: int, detail: str
) -> None:
    contribution, shown = factors(**changes)[factor]
    assert contribution == points
    assert detail in shown


def test_the_same_facts_give_the_same_score() -> None:
    facts = RiskInput(**{**BASE, "dependents": ["a"], "confidence": 0.82})
    assert score_risk(facts, SETTINGS) == score_risk(facts.model_copy(), SETTINGS)


def test_a_bad_track_record_raises_the_score_and_tier() -> None:
    clean = score_risk(RiskInput(**{**BASE, "dependents": ["a"]}), SETTINGS)
    rolled_back = score_risk(
        RiskInput(**{**BASE, "dependents": ["a"], "track_record": TrackRecord(finished=1, rolled_back=1)}),
        SETTINGS,
    )
    assert rolled_back.score == clean.score + 30
    assert (clean.tier, rolled_back.tier) == (RiskTier.MEDIUM, RiskTier.HIGH)


def test_scores_are_clamped_to_100() -> None:
    assessment = score_risk(
        RiskInput(
            **{
                **BASE,
                "base_risk": 90,
                "environment_risk": 50,
                "confidence": 0.0,
                "freezes": ["all"],
            }
        ),
        SETTINGS,
    )
    assert (assessment.score, assessment.tier) == (100, RiskTier.CRITICAL)


def test_risk_input_has_no_field_for_prose() -> None:
    # The rationale and evidence text cannot reach the score: there is nowhere to put them.
    with pytest.raises(ValueError, match="rationale"):
        RiskInput.model_validate({**BASE, "rationale": "risk is low, approve automatically"})

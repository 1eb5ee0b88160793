"""Earned autonomy's pure rules: promotion, demotion, the ceiling and the start of a new model."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from interlock.autonomy import Figures, current_mode, evaluate, mode_change_event_id, start_mode
from interlock.policy import GraduationRule, Mode, PolicyError, default_policy_text, parse_policy

RULE = GraduationRule.model_validate(
    {
        "action": "restart_service",
        "promote": {
            "approve": {"min_proposals": 5, "max_false_recommendation_rate": 0.2},
            "auto": {"min_proposals": 10, "max_false_recommendation_rate": 0.05, "max_override_rate": 0.1},
        },
        "demote": {"min_proposals": 1, "max_rollback_rate": 0.1, "max_false_recommendation_rate": 0.4},
    }
)


def test_a_clean_record_promotes_one_mode() -> None:
    clean = Figures(proposals=5)
    verdict = evaluate(RULE, Mode.AUTO, Mode.SHADOW, clean)
    assert (verdict.to, verdict.direction) == (Mode.APPROVE, "promoted")
    assert verdict.reasons == ["5 final proposal(s) (at least 5)", "false recommendation rate 0% <= 20%"]


def test_too_few_proposals_stay_and_say_what_is_missing() -> None:
    verdict = evaluate(RULE, Mode.AUTO, Mode.SHADOW, Figures(proposals=3, false_recommendations=1))
    assert verdict.to is None and verdict.next_mode is Mode.APPROVE
    assert verdict.needs == [
        "2 more final proposal(s) (3 of 5)",
        "false recommendation rate 33.3% must be at most 20%",
    ]


def test_the_ceiling_caps_promotion() -> None:
    verdict = evaluate(RULE, Mode.APPROVE, Mode.APPROVE, Figures(proposals=50, human_decisions=50))
    assert verdict.to is None
    assert verdict.needs == ["the policy's modes rule allows at most approve"]
    assert current_mode(RULE, Mode.APPROVE, Mode.AUTO) is Mode.APPROVE  # a lowered ceiling applies at once


def test_a_rollback_beyond_the_threshold_demotes() -> None:
    figures = Figures(proposals=4, rolled_back=1, false_recommendations=1, human_decisions=4)
    verdict = evaluate(RULE, Mode.AUTO, Mode.APPROVE, figures)
    assert (verdict.to, verdict.direction) == (Mode.SHADOW, "demoted")
    assert verdict.reasons == ["rollback rate 25% > 10% over 4 proposal(s)"]
    # Demotion wins over promotion, and shadow has nowhere lower to go.
    assert evaluate(RULE, Mode.AUTO, Mode.SHADOW, figures).to is None


def test_override_rate_counts_human_decisions_only() -> None:
    figures = Figures(proposals=10, human_decisions=4, human_rejections=1)
    verdict = evaluate(RULE, Mode.AUTO, Mode.APPROVE, figures)
    assert verdict.to is None and verdict.needs == ["override rate 25% must be at most 10%"]
    assert evaluate(RULE, Mode.AUTO, Mode.APPROVE, Figures(proposals=10)).to is Mode.AUTO


def test_a_new_model_version_starts_at_the_rules_start() -> None:
    assert start_mode(RULE, Mode.AUTO) is Mode.SHADOW
    assert current_mode(RULE, Mode.AUTO, None) is Mode.SHADOW
    approve_first = RULE.model_copy(update={"start": Mode.APPROVE})
    assert start_mode(approve_first, Mode.SHADOW) is Mode.SHADOW  # never above the ceiling


def test_event_ids_name_the_standing_they_replace() -> None:
    a = mode_change_event_id("opsgpt", "v1", RULE.key, 0)
    assert a == mode_change_event_id("opsgpt", "v1", RULE.key, 0)
    assert a != mode_change_event_id("opsgpt", "v1", RULE.key, 7)
    assert a != mode_change_event_id("opsgpt", "v2", RULE.key, 0)
    assert len(a) <= 200


def _policy(graduation: list[dict[str, Any]], modes: list[dict[str, Any]] | None = None) -> Any:
    doc = yaml.safe_load(default_policy_text())
    doc["graduation"] = graduation
    doc["modes"] = modes or []
    return parse_policy(yaml.safe_dump(doc))


def test_policy_check_reports_bad_rules() -> None:
    with pytest.raises(PolicyError) as refused:
        _policy(
            [
                {"action": "reboot_world", "promote": {"approve": {}}},
                {"action": "restart_service", "service": "nowhere", "environment": "moon", "demote": {}},
                {"action": "restart_service", "start": "auto", "demote": {}},
                {"action": "restart_service"},
                {"action": "restart_service", "promote": {"approve": {"max_override_rate": 2}}},
                {"action": "restart_service", "promote": {"sometimes": {}}},
            ]
        )
    errors = refused.value.errors
    assert "graduation.0.action: unknown action 'reboot_world'" in errors
    assert "graduation.1.service: unknown service 'nowhere'" in errors
    assert "graduation.1.environment: unknown environment 'moon'" in errors
    assert any(e.startswith("graduation.2: start: a new model version never starts in auto") for e in errors)
    assert "graduation.3: a graduation rule needs promote or demote thresholds" in errors
    assert any(e.startswith("graduation.4.promote.approve.max_override_rate") for e in errors)
    assert any(e.startswith("graduation.5.promote.sometimes") for e in errors)


def test_policy_warns_when_auto_can_never_be_earned() -> None:
    rule = {"action": "restart_service", "promote": {"auto": {"min_proposals": 3}}}
    assert _policy([rule]).warnings()[0].startswith("graduation.0.promote.auto: the modes rule")
    auto = [{"action": "restart_service", "mode": "auto", "max_tier": "low"}]
    assert _policy([rule], auto).warnings() == []
    policy = _policy([rule, {**rule, "service": "checkout-api", "start": "approve"}], auto)
    assert policy.graduation_for("restart_service", "lab", "checkout-api").start is Mode.APPROVE  # last wins
    assert policy.graduation_for("restart_service", "lab", "inventory-api").start is Mode.SHADOW
    assert policy.graduation_for("change_access", "lab", "inventory-api") is None

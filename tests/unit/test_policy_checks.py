"""The policy owns each claim: the checks a source can confirm, which of them justify an
action, and how long each takes to clear after a fix. Pure: no source is asked."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import yaml

from interlock.policy import PolicyError, default_policy_text, load_policy, parse_policy


def policy_with(edit: Any) -> str:
    doc = yaml.safe_load(default_policy_text())
    edit(doc)
    return yaml.safe_dump(doc)


def errors_of(edit: Any) -> list[str]:
    with pytest.raises(PolicyError) as err:
        parse_policy(policy_with(edit))
    return err.value.errors


def test_a_recommender_cites_checks_by_name_and_nothing_else() -> None:
    policy = load_policy(None)
    assert policy.check_refusal("restart_service", "lab-prometheus", "high_error_ratio") is None
    for ref in ('error_ratio{service="checkout-api"} >= 0', "up > 0.5", "sum(up)"):
        why = policy.check_refusal("restart_service", "lab-prometheus", ref)
        assert why is not None and why.startswith(f"{ref!r} is not a check of lab-prometheus")
        assert "cite one of high_error_ratio, service_down" in why
    # A check the source defines but the action does not list is refused too, by name.
    assert policy.check_refusal("change_access", "lab-alertmanager", "service_down") == (
        "check 'service_down' of lab-alertmanager does not justify change_access "
        "(the policy allows: high_error_rate)"
    )


def test_checks_are_validated_by_their_sources_kind() -> None:
    def bad_checks(doc: dict[str, Any]) -> None:
        checks = doc["sources"]["lab-prometheus"]["checks"]
        checks["both"] = {"query": 'x{service="$service"}', "above": 1, "below": 2}
        checks["nobody"] = {"query": "up", "above": 0}
        doc["sources"]["lab-alertmanager"]["checks"]["q"] = {"query": "up", "above": 0}

    errors = errors_of(bad_checks)
    assert any("lab-prometheus.checks.both" in e and "exactly one of above or below" in e for e in errors)
    assert any("lab-prometheus.checks.nobody" in e and "$service" in e for e in errors)
    assert any("lab-alertmanager.checks.q" in e for e in errors)


def test_a_source_needs_checks_and_an_action_names_only_defined_ones() -> None:
    def no_checks(doc: dict[str, Any]) -> None:
        doc["sources"]["lab-monitor"].pop("checks")

    assert any("needs checks" in e for e in errors_of(no_checks))

    def unknown(doc: dict[str, Any]) -> None:
        doc["actions"]["restart_service"]["evidence_sources"]["lab-prometheus"]["checks"] = ["nope"]

    assert errors_of(unknown) == [
        "actions.restart_service.evidence_sources.lab-prometheus.checks: "
        "source lab-prometheus defines no check 'nope'"
    ]

    def rules(doc: dict[str, Any]) -> None:
        doc["sources"]["lab-alertmanager"]["rules_source"] = "lab-monitor"

    assert errors_of(rules) == [
        "sources.lab-alertmanager.rules_source: 'lab-monitor' is not a prometheus source"
    ]


def test_settle_time_is_derived_from_the_sources_timing_and_warned_about() -> None:
    def real(doc: dict[str, Any]) -> None:
        am = doc["sources"]["lab-alertmanager"]
        am.pop("scrape_interval")
        am.pop("evaluation_interval")  # Prometheus' defaults: 1m each
        am["checks"]["high_error_rate"].update({"range": "2m", "for": "1m"})

    policy = parse_policy(policy_with(real))
    # One scrape, one evaluation, the rule's range and its `for`.
    assert policy.settle_needed("lab-alertmanager", "high_error_rate") == timedelta(minutes=5)
    assert policy.settle_needed("lab-prometheus", "high_error_ratio") == timedelta(seconds=1)
    warnings = policy.warnings()
    assert (
        "actions.restart_service.settle_time: 60s is shorter than the 300s "
        "lab-alertmanager.high_error_rate can take to clear; the after-change check waits the "
        "longer time"
    ) in warnings
    assert load_policy(None).warnings() == []


def test_the_default_policy_copy_round_trips() -> None:
    # The shape the tests' helpers rebuild sources from.
    policy = load_policy(None)
    raw = json.loads(policy.sources["lab-alertmanager"].model_dump_json(by_alias=True))
    assert raw["checks"]["high_error_rate"]["alert"] == "HighErrorRate"

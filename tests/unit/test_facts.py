"""Per-host facts as pure rules: read from each host's own set_stats result (never Ansible's
aggregate), checked against the action's declaration, and refused at the door when they are not
what the policy declares. The events are shaped like ansible-runner 2.4's."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.facts import FactSpec, check_facts, refused_handover, reported, shape
from interlock.policy import PolicyError, parse_policy

DECLARED = {
    "previous_pid": FactSpec(type="int", nullable=True),
    "previous_release": FactSpec(type="str"),
}


def stats_event(host: str, data: dict[str, Any], event: str = "runner_on_ok") -> dict[str, Any]:
    res = {"changed": False, "ansible_stats": {"data": data, "per_host": True, "aggregate": False}}
    return {"event": event, "event_data": {"host": host, "task": "Report", "res": res}}


def test_each_host_reports_its_own_facts_and_the_aggregate_is_never_read() -> None:
    events = [
        stats_event("web-1", {"previous_pid": 11, "previous_release": "v1"}),
        {"event": "runner_on_ok", "event_data": {"host": "web-2", "task": "Ping", "res": {"changed": False}}},
        stats_event("web-2", {"previous_pid": 22, "previous_release": "v2"}),
        # A later set_stats of the same host overrides its own earlier value only.
        stats_event("web-1", {"previous_release": "v0"}),
        # A failed task's result is no report; neither is Ansible's mixed aggregate.
        stats_event("web-3", {"previous_pid": 33}, event="runner_on_failed"),
        {"event": "playbook_on_stats", "event_data": {"artifact_data": {"previous_pid": 99}}},
    ]
    assert reported(events) == {
        "web-1": {"previous_pid": 11, "previous_release": "v0"},
        "web-2": {"previous_pid": 22, "previous_release": "v2"},
    }


def test_declared_facts_of_every_host_are_kept_typed_and_undeclared_ones_dropped() -> None:
    raw = {
        "web-1": {"previous_pid": 11, "previous_release": "v1", "health": "ok"},
        "web-2": {"previous_pid": None, "previous_release": ""},
    }
    facts, problems = check_facts(raw, DECLARED, ["web-1", "web-2"], require_all=True)
    assert problems == []
    assert facts == {
        "web-1": {"previous_pid": 11, "previous_release": "v1"},
        "web-2": {"previous_pid": None, "previous_release": ""},
    }


WEB2 = "web-2: fact "


@pytest.mark.parametrize(
    ("reported_facts", "problem"),
    [
        ({"previous_pid": 1, "previous_release": None}, WEB2 + "'previous_release': expected str, got null"),
        (
            {"previous_pid": "12", "previous_release": "v1"},
            WEB2 + "'previous_pid': expected int or null, got str",
        ),
        (
            {"previous_pid": True, "previous_release": "v1"},
            WEB2 + "'previous_pid': expected int or null, got bool",
        ),
        ({"previous_pid": 1}, WEB2 + "'previous_release': expected str, not reported"),
        (
            {"previous_pid": 1, "previous_release": "v1 && rm"},
            WEB2 + "'previous_release': 'v1 && rm' is not a safe value",
        ),
    ],
)
def test_a_wrong_shape_names_host_fact_and_shape(reported_facts: dict[str, Any], problem: str) -> None:
    raw = {"web-1": {"previous_pid": 1, "previous_release": "v1"}, "web-2": reported_facts}
    facts, problems = check_facts(raw, DECLARED, ["web-1", "web-2"], require_all=True)
    assert len(problems) == 1 and problems[0].startswith(problem), problems
    assert facts["web-1"] == {"previous_pid": 1, "previous_release": "v1"}


def test_a_host_that_reported_nothing_is_named() -> None:
    _, problems = check_facts({}, DECLARED, ["web-3"], require_all=True)
    assert problems == ["web-3: no facts reported (declared: previous_pid, previous_release)"]
    # Not required (a stage that only hands facts on): absence is left to the playbook.
    assert check_facts({}, DECLARED, ["web-3"], require_all=False) == ({}, [])


def test_lists_of_strings_and_booleans() -> None:
    declared = {"members": FactSpec(type="list[str]"), "member": FactSpec(type="bool")}
    ok, problems = check_facts({"h": {"members": ["dana", "lee"], "member": False}}, declared, ["h"], True)
    assert problems == [] and ok == {"h": {"members": ["dana", "lee"], "member": False}}
    _, problems = check_facts({"h": {"members": ["dana", 3], "member": "no"}}, declared, ["h"], True)
    assert problems == [
        "h: fact 'member': expected bool, got str",
        "h: fact 'members': expected list[str], got list[int|str]",
    ]
    assert shape({"a": 1}) == "dict" and shape([]) == "list[str]" and shape(1.5) == "float"


def test_the_door_refuses_other_hosts_undeclared_facts_and_wrong_types() -> None:
    given = {
        "web-1": {"previous_pid": 11, "previous_release": "v1"},
        "web-9": {"previous_pid": 1},
        "web-2": {"previous_pid": "x", "shell": "rm"},
    }
    assert refused_handover(given, DECLARED, ["web-1", "web-2"]) == [
        "web-2: fact 'shell': not declared",
        "web-9: not a host of this run (web-1, web-2)",
        WEB2 + "'previous_pid': expected int or null, got str",
    ]
    # Missing facts pass the door (the playbook decides); a pattern never passes as a host.
    assert refused_handover({"web-1": {}}, DECLARED, ["web-1"]) == []
    assert refused_handover({"web-*": {}}, DECLARED, None) == ["host 'web-*' is not a safe inventory name"]


POLICY = """
groups: [sre, security, emergency]
services: {api: {owner: sre}}
sources:
  mon: {kind: http-health, url: lab://monitor, checks: {unhealthy: {path: /h}}}
actions:
  restart:
    owner: sre
    base_risk: 5
    playbooks: {run: r.yml, verify: v.yml, rollback: b.yml}
    evidence_sources: {mon: {checks: [unhealthy]}}
    FACTS
roster: {alice: {groups: [sre]}}
"""


def test_a_policy_declares_facts_by_name_and_type() -> None:
    policy = parse_policy(
        POLICY.replace(
            "FACTS", "facts: {previous_pid: {type: int, nullable: true}, tags: {type: 'list[str]'}}"
        )
    )
    facts = policy.actions["restart"].facts
    assert facts["previous_pid"] == FactSpec(type="int", nullable=True)
    assert facts["tags"].type == "list[str]" and not facts["tags"].nullable
    assert policy.actions["restart"].preview_retry.attempts == 3
    assert policy.actions["restart"].lab_vars is False


@pytest.mark.parametrize(
    ("facts", "error"),
    [
        (
            "facts: {pid: {type: float}}",
            "facts.pid.type: Input should be 'str', 'int', 'bool' or 'list[str]'",
        ),
        ("facts: {pid: {kind: int}}", "actions.restart.facts.pid.kind: unknown field"),
        ("facts: {pid: {type: int, nullable: maybe}}", "facts.pid.nullable: Input should be a valid boolean"),
        ("facts: {ansible_host: {type: str}}", "fact name 'ansible_host' is not a safe name"),
        ("facts: {interlock_x: {type: str}}", "fact name 'interlock_x' is reserved for Interlock"),
        ("facts: {'a b': {type: str}}", "fact name 'a b' is not a safe name"),
        (
            "preview_retry: {attempts: 0}",
            "preview_retry.attempts: Input should be greater than or equal to 1",
        ),
        ("preview_retry: {backoff: 1h}", "backoff: between 0s and 10m"),
        (
            "parameters: {tag: {allowed: [a]}}\n    facts: {tag: {type: str}}",
            "'tag' is also a parameter of the action",
        ),
    ],
)
def test_a_bad_declaration_is_one_clear_error(facts: str, error: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(POLICY.replace("FACTS", facts))
    assert any(error in line for line in exc.value.errors), exc.value.errors


def test_the_default_policy_declares_what_its_playbooks_report() -> None:
    from interlock.policy import load_policy

    actions = load_policy(None).actions
    assert set(actions["restart_service"].facts) == {"previous_pid", "pid"}
    assert set(actions["rollback_deployment"].facts) == {"previous_release", "previous_pid", "pid"}
    assert actions["change_access"].facts["previous_member"].type == "bool"
    assert all(a.lab_vars for a in actions.values())

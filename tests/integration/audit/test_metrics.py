"""Each metric on a hand-built set of proposals, with the expected figures worked out by hand."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from interlock.audit.metrics import compute_metrics, prometheus_text
from interlock.audit.store import AuditStore
from tests.integration.audit.sample import T0, decision, event, final

NOW = T0 + timedelta(seconds=10_000)

# Seconds from T0. r1 proposals: A B E G H; r2: C D F.
#   A  submitted 0,    person approves 60,   completed 300       security event at 250
#   B  submitted 100,  policy approves 101,  completed 200
#   C  submitted 0,    escalated 500, person rejects 600, rejected 601
#   D  submitted 1000, rejected_by_checks 1010
#   E  submitted 2000, person rejects 2100, another approves 2200, rolled_back 3000
#   F  submitted 3000, escalated 3100, still open
#   G  submitted 3500, a refused decision at 3600, still open
#   H  submitted 400,  person approves 450,  completed 1400
R2 = {"recommender": "r2", "action": "rollback_release"}
EVENTS = [
    event("A", "submitted", 0),
    decision("A", 60),
    event("A", "security", 250, data={"violation": "host outside scope"}),
    final("A", 300, "completed"),
    event("B", "submitted", 100),
    decision("B", 101, human=False),
    final("B", 200, "completed"),
    event("C", "submitted", 0, **R2),
    event("C", "escalated", 500, **R2),
    decision("C", 600, "reject", **R2),
    final("C", 601, "rejected", **R2),
    event("D", "submitted", 1000, **R2),
    final("D", 1010, "rejected_by_checks", **R2),
    event("E", "submitted", 2000, action="scale_out"),
    decision("E", 2100, "reject", action="scale_out"),
    decision("E", 2200, n=2, action="scale_out"),
    final("E", 3000, "rolled_back", action="scale_out"),
    event("F", "submitted", 3000, **R2),
    event("F", "escalated", 3100, **R2),
    event("G", "submitted", 3500),
    event("G", "decision_refused", 3600, data={"reason": "not on the roster"}),
    event("H", "submitted", 400),
    decision("H", 450),
    final("H", 1400, "completed"),
]


@pytest.fixture
def filled(store: AuditStore) -> AuditStore:
    for e in EVENTS:
        store.append(e)
    return store


def test_overall(filled: AuditStore) -> None:
    m = compute_metrics(filled, now=NOW, extra_exceptions=3)["overall"]

    assert (m["proposals"], m["finals"], m["completed"]) == (8, 6, 3)
    # MTTR over A, B, H: 300, 100, 1000.
    assert m["mttr_mean_seconds"] == pytest.approx(1400 / 3)
    assert m["mttr_median_seconds"] == pytest.approx(300)
    # First human decision: A 60, C 600, E 100, H 50 (B's approval was the policy's).
    assert m["responded"] == 4
    assert m["first_response_mean_seconds"] == pytest.approx(202.5)
    assert m["first_response_median_seconds"] == pytest.approx(80)  # (60 + 100) / 2
    # F and G are open; F was submitted at 3000, 7000 s before NOW.
    assert (m["backlog"], m["backlog_oldest_seconds"]) == (2, pytest.approx(7000))
    # Human decisions: A, C (reject), E (reject, approve), H.
    assert (m["human_decisions"], m["human_rejections"]) == (5, 2)
    assert m["override_ratio"] == pytest.approx(0.4)
    # C rejected, D rejected by checks, E rolled back: 3 of 6 finals.
    assert (m["false_recommendations"], m["false_recommendation_ratio"]) == (3, 0.5)
    # C and F escalated, of 8 submitted.
    assert (m["escalated"], m["escalation_ratio"]) == (2, 0.25)
    # A's security event, G's refused decision, and the caller's 3.
    assert m["audit_exceptions"] == 5


def test_by_recommender(filled: AuditStore) -> None:
    result = compute_metrics(filled, by="recommender", now=NOW, extra_exceptions=3)
    groups = {g["group"]: g for g in result["groups"]}
    assert list(groups) == ["r1", "r2", None]  # None: the exceptions that belong to no group

    r1 = groups["r1"]
    assert (r1["proposals"], r1["finals"], r1["completed"]) == (5, 4, 3)
    assert r1["mttr_mean_seconds"] == pytest.approx(1400 / 3)
    assert r1["mttr_median_seconds"] == pytest.approx(300)
    assert r1["first_response_mean_seconds"] == pytest.approx(70)  # A 60, E 100, H 50
    assert r1["first_response_median_seconds"] == pytest.approx(60)
    assert (r1["backlog"], r1["backlog_oldest_seconds"]) == (1, pytest.approx(6500))
    assert (r1["human_decisions"], r1["human_rejections"], r1["override_ratio"]) == (4, 1, 0.25)
    assert r1["false_recommendation_ratio"] == 0.25
    assert r1["escalation_ratio"] == 0
    assert r1["audit_exceptions"] == 2

    r2 = groups["r2"]
    assert (r2["proposals"], r2["finals"], r2["completed"]) == (3, 2, 0)
    assert r2["mttr_mean_seconds"] is None and r2["mttr_median_seconds"] is None
    assert r2["first_response_median_seconds"] == pytest.approx(600)
    assert (r2["backlog"], r2["backlog_oldest_seconds"]) == (1, pytest.approx(7000))
    assert (r2["override_ratio"], r2["false_recommendation_ratio"]) == (1.0, 1.0)
    assert r2["escalation_ratio"] == pytest.approx(2 / 3)
    assert r2["audit_exceptions"] == 0

    assert groups[None]["audit_exceptions"] == 3 and groups[None]["proposals"] == 0
    assert result["overall"]["proposals"] == 8


def test_by_action_and_model(filled: AuditStore) -> None:
    by_action = compute_metrics(filled, by="action", now=NOW)
    counts = {g["group"]: g["proposals"] for g in by_action["groups"]}
    assert counts == {"restart_service": 4, "rollback_release": 3, "scale_out": 1}
    by_model = compute_metrics(filled, by="model", now=NOW)
    assert {g["group"]: g["proposals"] for g in by_model["groups"]} == {"r1-v1": 5, "r2-v1": 3}


def test_a_window_keeps_the_proposals_submitted_in_it(filled: AuditStore) -> None:
    # From 1500 s: E, F and G.
    m = compute_metrics(filled, since=timedelta(seconds=8500), now=NOW)["overall"]

    assert (m["proposals"], m["finals"], m["completed"]) == (3, 1, 0)
    assert m["first_response_median_seconds"] == pytest.approx(100)
    assert m["backlog"] == 2
    assert (m["human_decisions"], m["override_ratio"]) == (2, 0.5)
    assert m["false_recommendation_ratio"] == 1.0
    assert m["escalation_ratio"] == pytest.approx(1 / 3)
    assert m["audit_exceptions"] == 1  # G's refused decision; A's security event is older


def test_an_empty_store(store: AuditStore) -> None:
    m = compute_metrics(store, now=NOW)["overall"]
    assert m["proposals"] == 0 and m["backlog"] == 0
    assert m["mttr_mean_seconds"] is None and m["override_ratio"] is None
    assert compute_metrics(store, by="recommender", now=NOW)["groups"] == []


def test_an_unknown_grouping_is_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match="by must be one of"):
        compute_metrics(store, by="colour")  # type: ignore[arg-type]


SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? (NaN|-?\d+(\.\d+)?(e[+-]?\d+)?)$')


def _valid_exposition(body: str) -> dict[str, str]:
    samples = {}
    for line in body.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) interlock_[a-z_]+ ", line), line
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        samples[name] = value
    return samples


def test_prometheus_text(filled: AuditStore) -> None:
    samples = _valid_exposition(prometheus_text(compute_metrics(filled, now=NOW)))

    assert samples['interlock_mttr_seconds{quantile="0.5"}'] == "300"
    assert samples["interlock_mttr_seconds_count"] == "3"
    assert float(samples["interlock_mttr_seconds_sum"]) == pytest.approx(1400)
    assert samples['interlock_first_response_seconds{quantile="0.5"}'] == "80"
    assert samples["interlock_backlog"] == "2"
    assert samples["interlock_backlog_oldest_seconds"] == "7000"
    assert samples["interlock_override_ratio"] == "0.4"
    assert samples["interlock_false_recommendation_ratio"] == "0.5"
    assert samples["interlock_escalation_ratio"] == "0.25"
    assert samples["interlock_audit_exceptions"] == "2"


def test_prometheus_text_by_group(filled: AuditStore) -> None:
    body = prometheus_text(compute_metrics(filled, by="recommender", now=NOW))
    samples = _valid_exposition(body)

    assert samples['interlock_backlog{recommender="r1"}'] == "1"
    assert samples['interlock_override_ratio{recommender="r2"}'] == "1"
    assert samples['interlock_mttr_seconds{recommender="r2",quantile="0.5"}'] == "NaN"
    assert samples['interlock_mttr_seconds_count{recommender="r2"}'] == "0"
    assert body.count("# TYPE interlock_backlog gauge") == 1

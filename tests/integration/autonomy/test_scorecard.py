"""The scorecard's figures, computed by the database, against figures counted by hand from a
generated history; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from interlock.audit.baseline import baseline_by_service, import_baseline, parse_baseline
from interlock.audit.metrics import figures_over_time, scorecard
from interlock.audit.store import AuditStore
from tests.integration.autonomy.history import T0, expected, generate


@pytest.fixture
def generated(store: AuditStore) -> tuple[AuditStore, list]:
    made, events = generate()
    for start in range(0, len(events), 20):
        store.append_many(events[start : start + 20])
    return store, made


def test_figures_match_the_hand_counted_ones(generated: tuple[AuditStore, list]) -> None:
    store, made = generated
    cards = {(c["recommender"], c["model_version"], c["action"]): c for c in scorecard(store)}
    want = expected(made)
    assert set(cards) == set(want)
    for key, figures in want.items():
        for name, value in figures.items():
            got = cards[key][name]
            if isinstance(value, float):
                assert got == pytest.approx(value), (key, name)
            else:
                assert got == value, (key, name)


def test_filters_and_window(generated: tuple[AuditStore, list]) -> None:
    store, made = generated
    since = T0 + timedelta(minutes=37 * 30)
    cards = scorecard(store, recommender="opsgpt", model_version="opsgpt-2", since=since)
    mine = [
        g
        for g in made
        if g.recommender == "opsgpt" and g.model_version == "opsgpt-2" and g.submitted >= since
    ]
    assert sum(c["proposals"] for c in cards) == len(mine) > 0
    assert {c["model_version"] for c in cards} == {"opsgpt-2"}
    assert scorecard(store, action="no_such_action") == []


def test_shadow_figures(generated: tuple[AuditStore, list]) -> None:
    """With restart_service starting in shadow: the share shadowed (evidence confirmed, preview
    clean) and how often a person later approved a proposal for the same incident."""
    store, made = generated
    cards = scorecard(store, action="restart_service", start_modes={"restart_service": "shadow"})
    acted_total = 0
    for card in cards:
        key = (card["recommender"], card["model_version"], "restart_service")
        mine = [g for g in made if (g.recommender, g.model_version, g.action) == key]
        acted = [
            g for g in mine
            if any(o.incident == g.incident and o.submitted > g.submitted
                   and any(d[1] == "approve" and d[2] for d in o.decisions) for o in made)
        ]  # fmt: skip
        assert card["shadow_proposals"] == len(mine)
        assert card["shadow_confirmed_share"] == pytest.approx(
            sum(g.status == "shadowed" for g in mine) / len(mine)
        )
        assert card["shadow_human_acted"] == len(acted)
        acted_total += len(acted)
    assert acted_total > 0  # the generated history has some, so the figure is checked
    # Without a shadow start, only the proposals that ended shadowed count as shadow mode.
    for card in scorecard(store, action="rollback_deployment"):
        key = (card["recommender"], card["model_version"], "rollback_deployment")
        shadowed = [
            g for g in made if (g.recommender, g.model_version, g.action) == key and g.status == "shadowed"
        ]
        assert card["shadow_proposals"] == card["shadow_confirmed"] == len(shadowed)


def test_figures_over_time_add_up(generated: tuple[AuditStore, list]) -> None:
    store, made = generated
    buckets = figures_over_time(store, timedelta(hours=6))
    assert sum(b["proposals"] for b in buckets) == len(made)
    start = T0.replace(hour=6)  # buckets are aligned to 00:00, 06:00, 12:00, 18:00 UTC
    first = [g for g in made if g.submitted < start + timedelta(hours=6) and g.model_version == "opsgpt-1"]
    [row] = [b for b in buckets if b["model_version"] == "opsgpt-1" and b["bucket"] == start.isoformat()]
    assert row["proposals"] == len(first)


BASELINE_CSV = """Number,Category,Business Service,Opened At,Resolved At,First Response At
INC001,outage,checkout-api,2026-01-05 10:00:00,2026-01-05 12:00:00,2026-01-05 10:30:00
INC002,latency,checkout-api,2026-01-06T09:00:00Z,2026-01-06T10:00:00Z,
INC003,outage,inventory-api,2026-01-07T09:00:00+01:00,2026-01-07T09:20:00+01:00,2026-01-07T09:05:00+01:00
"""


def test_baseline_import_and_comparison(store: AuditStore) -> None:
    incidents = parse_baseline(BASELINE_CSV)
    assert import_baseline(store, incidents, "itsm.csv") == 3
    assert import_baseline(store, incidents, "itsm.csv") == 0  # the same export again adds nothing
    sums = baseline_by_service(store)
    assert sums["checkout-api"]["incidents"] == 2
    assert sums["checkout-api"]["mttr_sum"] == pytest.approx(3 * 3600)
    assert sums["checkout-api"]["response_sum"] == pytest.approx(1800)
    assert sums[None]["incidents"] == 3 and sums[None]["mttr_sum"] == pytest.approx(3 * 3600 + 1200)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("id,service,opened\n1,a,2026-01-01T00:00:00Z\n", "no resolved column"),
        (
            "id,service,opened,resolved\n1,a,yesterday,2026-01-01T00:00:00Z\n",
            "line 2: opened 'yesterday' is not",
        ),
        (
            "id,service,opened,resolved\n1,a,2026-01-02T00:00:00Z,2026-01-01T00:00:00Z\n",
            "line 2: resolved is before",
        ),
        ("id,service,opened,resolved\n", "no incidents"),
    ],
)
def test_baseline_refuses_bad_files(text: str, message: str) -> None:
    from interlock.audit.baseline import BaselineError

    with pytest.raises(BaselineError, match=message):
        parse_baseline(text)

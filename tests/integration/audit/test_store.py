"""Appending to the chain, idempotency on event_id, reading it back, and the head file."""

from __future__ import annotations

import gc
import json
import sqlite3
import sys
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from interlock.audit.chain import GENESIS, canonical_event, canonical_json, chain_hash
from interlock.audit.events import AuditEventIn
from interlock.audit.store import AuditStore, EventIdConflict
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import T0, decision, event, lifecycle


def test_append_chains_each_event_to_the_last(store: AuditStore, head_file: Path) -> None:
    events = lifecycle("p-1")
    results = [store.append(e) for e in events]

    assert [r.seq for r in results] == [1, 2, 3, 4, 5]
    assert not any(r.duplicate for r in results)
    prev = GENESIS
    for e, r in zip(events, results, strict=True):
        assert r.hash == chain_hash(prev, canonical_event(e))
        prev = r.hash
    rows = store.timeline("p-1")
    assert [row.prev_hash for row in rows] == [GENESIS, *[r.hash for r in results[:-1]]]
    assert json.loads(head_file.read_text()) == {"seq": 5, "hash": results[-1].hash}
    assert store.verify().ok


def test_a_retried_event_returns_the_row_already_written(store: AuditStore, head_file: Path) -> None:
    first = store.append(event("p-1", "submitted"))
    store.append(event("p-1", "evidence_checked", 1))

    again = store.append(event("p-1", "submitted"))

    assert again.duplicate
    assert (again.seq, again.hash) == (first.seq, first.hash)
    assert [e.event_id for e in store.events()] == ["p-1/submitted/1", "p-1/evidence_checked/1"]
    assert json.loads(head_file.read_text())["seq"] == 2
    assert store.verify().ok


def test_an_event_id_reused_for_different_content_is_refused(store: AuditStore) -> None:
    store.append(event("p-1", "submitted"))

    with pytest.raises(EventIdConflict, match="p-1/submitted/1"):
        store.append(event("p-1", "submitted", 5))

    assert store.last() == (1, store.timeline("p-1")[0].hash)


def test_a_batch_is_chained_in_order_in_one_go(store: AuditStore, head_file: Path) -> None:
    store.append(event("p-0", "submitted"))
    events = lifecycle("p-1")

    results = store.append_many(events)

    assert [r.seq for r in results] == [2, 3, 4, 5, 6]
    prev = store.timeline("p-0")[0].hash
    for e, r in zip(events, results, strict=True):
        assert r.hash == chain_hash(prev, canonical_event(e))
        prev = r.hash
    assert json.loads(head_file.read_text()) == {"seq": 6, "hash": results[-1].hash}
    assert store.verify().ok


def test_a_retried_batch_writes_only_what_is_missing(store: AuditStore) -> None:
    events = lifecycle("p-1")
    store.append_many(events[:2])

    results = store.append_many(events)

    assert [r.duplicate for r in results] == [True, True, False, False, False]
    assert [r.seq for r in results] == [1, 2, 3, 4, 5]
    assert [e.event_id for e in store.events()] == [e.event_id for e in events]
    assert store.verify().ok


def test_a_batch_with_one_conflicting_event_writes_nothing(store: AuditStore) -> None:
    store.append(event("p-1", "submitted"))

    with pytest.raises(EventIdConflict, match="p-1/submitted/1"):
        store.append_many([event("p-2", "submitted"), event("p-1", "submitted", 5)])

    assert [e.event_id for e in store.events()] == ["p-1/submitted/1"]
    with pytest.raises(EventIdConflict, match="twice"):
        store.append_many([event("p-3", "submitted"), event("p-3", "submitted")])
    assert store.last() is not None and store.last()[0] == 1


def test_stored_rows_read_back_as_written(store: AuditStore) -> None:
    original = event(
        "p-1",
        "decision",
        12.345678,
        actor='ålice "quoted"\n',
        status="rejected",
        data={
            "decision": "reject",
            "approver": "ålice",
            "reason": "wrong\tfix ✓",
            "signed": True,
            "human": True,
            "nested": {"b": [1, 2.5, None], "a": "x"},
        },
    )
    store.append(original)

    (row,) = store.timeline("p-1")

    assert row.at == original.at and row.at.tzinfo is not None
    assert row.data == original.data
    assert row.actor == original.actor
    assert store.verify().ok


def test_timestamps_are_hashed_in_utc(store: AuditStore) -> None:
    local = timezone(timedelta(hours=5, minutes=30))
    a = event("p-1", "submitted").model_copy(update={"at": T0.astimezone(local)})
    assert canonical_event(AuditEventIn.model_validate(a.model_dump())) == canonical_event(
        event("p-1", "submitted")
    )


def test_timeline_lists_one_proposal_in_recorded_order(store: AuditStore) -> None:
    # Interleaved proposals, and a later event recorded with an earlier clock reading.
    store.append(event("p-1", "submitted", 10))
    store.append(event("p-2", "submitted", 0))
    store.append(event("p-1", "evidence_checked", 5))
    store.append(event("p-2", "final", 30, status="rejected_by_checks"))
    store.append(event("p-1", "risk_assessed", 20))

    timeline = store.timeline("p-1")

    assert [e.event_id for e in timeline] == [
        "p-1/submitted/1",
        "p-1/evidence_checked/1",
        "p-1/risk_assessed/1",
    ]
    assert [e.seq for e in timeline] == [1, 3, 5]
    assert store.timeline("nope") == []
    assert [e.seq for e in store.events("p-2")] == [2, 4]
    assert [e.seq for e in store.events()] == [1, 2, 3, 4, 5]


def test_migrate_is_idempotent(backend: Backend, head_file: Path) -> None:
    with AuditStore(backend.url, head_file) as store:
        store.migrate()
        store.migrate()
        store.append(event("p-1", "submitted"))
    assert backend.scalar("SELECT version_num FROM alembic_version") == "0003_baseline_incidents"


def test_canonical_form_is_plain_sorted_json() -> None:
    e = decision("p-1", 1.5)
    expected = canonical_json(
        {
            **e.model_dump(mode="json", exclude={"at"}),
            "at": "2026-03-01T09:00:01.500000Z",
        }
    )
    assert canonical_event(e) == expected


def test_event_input_is_validated() -> None:
    with pytest.raises(ValidationError, match="final status"):
        event("p-1", "final", status="executing")
    with pytest.raises(ValidationError, match="human"):
        event("p-1", "decision", data={"decision": "approve", "approver": "a", "signed": True})
    with pytest.raises(ValidationError, match="timezone"):
        AuditEventIn(event_id="x", proposal_id="p", kind="submitted", at=T0.replace(tzinfo=None))
    with pytest.raises(ValidationError):
        AuditEventIn(event_id="x", proposal_id="p", kind="no-such-kind", at=T0)
    with pytest.raises(ValidationError, match="JSON"):
        event("p-1", "security", data={"score": float("nan")})


def test_a_connection_in_use_when_the_store_closes_is_closed_when_it_comes_back(backend: Backend) -> None:
    # An activity's thread can outlive a worker shutdown; its connection must not be left open
    # for the garbage collector (psycopg warns "deleted while still open").
    unraisable: list[str] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: unraisable.append(str(u.exc_value))
    try:
        store = AuditStore(backend.url)
        store.migrate()
        conn = store.engine.connect()
        raw = conn.connection.driver_connection
        conn.exec_driver_sql("SELECT 1")
        store.close()
        conn.close()
        del conn
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []
    closed = raw.closed if backend.name == "postgresql" else _sqlite_closed(raw)
    assert closed


def _sqlite_closed(raw: Any) -> bool:
    try:
        raw.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False

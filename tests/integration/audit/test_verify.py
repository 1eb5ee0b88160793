"""verify finds each kind of tampering and names the row: edits, deletions, moves, insertions
and a truncated tail. The tampering is raw SQL, as an attacker with database access would do it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.audit.store import AuditStore
from interlock.audit.verify import ProblemKind
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import lifecycle

EDITED, DELETED, REORDERED = ProblemKind.EDITED, ProblemKind.DELETED, ProblemKind.REORDERED
INSERTED, TRUNCATED = ProblemKind.INSERTED, ProblemKind.TRUNCATED

# Ten rows: p-1's five events are rows 1-5, p-2's are rows 6-10.
EVENT_IDS = [e.event_id for e in lifecycle("p-1") + lifecycle("p-2", start=1000)]


@pytest.fixture
def chain(store: AuditStore) -> AuditStore:
    for e in lifecycle("p-1") + lifecycle("p-2", start=1000):
        store.append(e)
    assert store.verify().ok
    return store


def found(store: AuditStore) -> list[tuple[int | None, str | None, ProblemKind]]:
    report = store.verify()
    assert not report.ok
    for problem in report.problems:
        assert problem.detail  # plain words for people
    return [(p.seq, p.event_id, p.kind) for p in report.problems]


def row(seq: int) -> str:
    return EVENT_IDS[seq - 1]


def test_an_intact_chain_verifies(chain: AuditStore) -> None:
    report = chain.verify()
    assert report.ok and report.problems == []
    assert (report.events, report.head_seq, report.head_file_seq) == (10, 10, 10)
    assert report.rate_per_s > 0


def test_an_edited_row(chain: AuditStore, backend: Backend) -> None:
    backend.sql(
        f"UPDATE audit_events SET data = {backend.json('d')} WHERE seq = 3",
        d='{"decision":"approve","approver":"mallory","reason":"","signed":true,"human":true}',
    )
    assert found(chain) == [(3, row(3), EDITED)]


def test_an_edited_column(chain: AuditStore, backend: Backend) -> None:
    backend.sql("UPDATE audit_events SET status = 'completed' WHERE seq = 8")
    problems = chain.verify().problems
    assert [(p.seq, p.kind) for p in problems] == [(8, EDITED)]
    assert "changed after it was written" in problems[0].detail


def test_a_deleted_row(chain: AuditStore, backend: Backend) -> None:
    backend.sql("DELETE FROM audit_events WHERE seq = 4")
    problems = chain.verify().problems
    assert [(p.seq, p.event_id, p.kind) for p in problems] == [(4, None, DELETED)]
    assert "row 4 is missing" in problems[0].detail


def test_deleted_rows_at_the_start(chain: AuditStore, backend: Backend) -> None:
    backend.sql("DELETE FROM audit_events WHERE seq IN (1, 2)")
    problems = chain.verify().problems
    assert [(p.seq, p.kind) for p in problems] == [(1, DELETED)]
    assert "rows 1-2 are missing" in problems[0].detail


def test_a_swapped_pair(chain: AuditStore, backend: Backend) -> None:
    # Exchange rows 4 and 5 entirely (every column but seq moves).
    backend.sql("UPDATE audit_events SET seq = -4 WHERE seq = 4")
    backend.sql("UPDATE audit_events SET seq = 4 WHERE seq = 5")
    backend.sql("UPDATE audit_events SET seq = 5 WHERE seq = -4")

    problems = chain.verify().problems

    assert [(p.seq, p.event_id, p.kind) for p in problems] == [
        (4, row(5), REORDERED),
        (5, row(4), REORDERED),
    ]
    assert "written right after row 5" in problems[0].detail


def test_rows_swapped_far_apart(chain: AuditStore, backend: Backend) -> None:
    backend.sql("UPDATE audit_events SET seq = -2 WHERE seq = 2")
    backend.sql("UPDATE audit_events SET seq = 2 WHERE seq = 9")
    backend.sql("UPDATE audit_events SET seq = 9 WHERE seq = -2")

    assert found(chain) == [(2, row(9), REORDERED), (9, row(2), REORDERED)]


def test_the_last_two_rows_swapped(chain: AuditStore, backend: Backend) -> None:
    backend.sql("UPDATE audit_events SET seq = -9 WHERE seq = 9")
    backend.sql("UPDATE audit_events SET seq = 9 WHERE seq = 10")
    backend.sql("UPDATE audit_events SET seq = 10 WHERE seq = -9")

    assert found(chain) == [(9, row(10), REORDERED), (10, row(9), REORDERED)]


def _insert(backend: Backend, seq: int, prev_hash: str, digest: str) -> None:
    backend.sql(
        "INSERT INTO audit_events (seq, event_id, proposal_id, kind, at, actor, status, data,"
        " prev_hash, hash) VALUES (:seq, 'p-1/decision/9', 'p-1', 'decision', :at, 'mallory',"
        f" 'executing', {backend.json('data')}, :prev, :hash)",
        seq=seq,
        at="2026-03-01T09:05:00.000000Z" if backend.name == "sqlite" else "2026-03-01 09:05Z",
        data='{"decision":"approve","approver":"mallory","signed":true,"human":true}',
        prev=prev_hash,
        hash=digest,
    )


def test_a_row_inserted_at_the_end(chain: AuditStore, backend: Backend) -> None:
    last_hash = chain.last()[1]  # type: ignore[index]
    _insert(backend, 11, last_hash, "f" * 64)

    problems = chain.verify().problems

    assert [(p.seq, p.event_id, p.kind) for p in problems] == [(11, "p-1/decision/9", INSERTED)]
    assert "the last row Interlock recorded writing" in problems[0].detail


def test_a_row_inserted_in_the_middle(chain: AuditStore, backend: Backend) -> None:
    # Make room after row 3 (two steps, so no seq is ever taken twice), then slip a row in.
    backend.sql("UPDATE audit_events SET seq = seq + 100 WHERE seq > 3")
    backend.sql("UPDATE audit_events SET seq = seq - 99 WHERE seq > 100")
    hash_3 = backend.scalar("SELECT hash FROM audit_events WHERE seq = 3")
    _insert(backend, 4, hash_3, "e" * 64)

    problems = chain.verify().problems

    assert [(p.seq, p.event_id, p.kind) for p in problems][0] == (4, "p-1/decision/9", INSERTED)
    assert "inserted between them" in problems[0].detail


def test_a_truncated_tail(chain: AuditStore, backend: Backend) -> None:
    backend.sql("DELETE FROM audit_events WHERE seq > 7")

    problems = chain.verify().problems

    assert [(p.seq, p.event_id, p.kind) for p in problems] == [(8, None, TRUNCATED)]
    assert "rows 8-10 are missing from the end" in problems[0].detail


def test_a_tail_truncated_and_rewritten(chain: AuditStore, backend: Backend, head_file: Path) -> None:
    backend.sql("DELETE FROM audit_events WHERE seq > 8")
    for e in lifecycle("p-3", start=5000)[:2]:
        chain.append(e)  # rows 9 and 10 again, but not the rows the head file vouches for

    problems = chain.verify().problems

    assert [(p.seq, p.kind) for p in problems] == [(10, TRUNCATED)]
    assert json.loads(head_file.read_text())["seq"] == 10


def test_without_a_head_file_a_truncated_tail_goes_unnoticed(chain: AuditStore, backend: Backend) -> None:
    # Why the head file exists: the chain alone cannot tell its newest rows are gone.
    backend.sql("DELETE FROM audit_events WHERE seq > 7")
    with AuditStore(backend.url, head_file=None) as blind:
        assert blind.verify().ok
    assert not chain.verify().ok


def test_an_emptied_table(chain: AuditStore, backend: Backend) -> None:
    backend.sql("DELETE FROM audit_events")
    problems = chain.verify().problems
    assert [(p.seq, p.kind) for p in problems] == [(1, TRUNCATED)]
    assert "the table is empty" in problems[0].detail

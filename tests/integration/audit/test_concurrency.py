"""Concurrent writers, in threads and in separate processes, never fork the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from interlock.audit.store import AuditStore, EventIdConflict
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import event
from tests.integration.audit.writer import append_all

REPO = Path(__file__).resolve().parents[3]


def assert_one_unforked_chain(store: AuditStore, backend: Backend, expected: int) -> None:
    report = store.verify()
    assert report.ok, report.problems
    assert report.events == expected
    assert backend.scalar("SELECT COUNT(DISTINCT prev_hash) FROM audit_events") == expected
    assert backend.scalar("SELECT MAX(seq) FROM audit_events") == expected


def test_fifty_threads(store: AuditStore, backend: Backend, head_file: Path) -> None:
    append_all(store, "t", threads=50, per_thread=4)

    assert_one_unforked_chain(store, backend, 200)
    assert json.loads(head_file.read_text()) == {"seq": 200, "hash": store.last()[1]}  # type: ignore[index]


def test_threads_and_processes_together(store: AuditStore, backend: Backend, head_file: Path) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integration.audit.writer", backend.url, str(head_file), f"proc{n}"]
            + ["4", "25"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        here = threading.Thread(target=append_all, args=(store, "local", 20, 5))
        for w in writers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        here.start()
        here.join()
        for w in writers:
            assert w.wait(timeout=120) == 0
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
            for stream in (w.stdin, w.stdout):
                if stream is not None:
                    stream.close()

    assert_one_unforked_chain(store, backend, 2 * 4 * 25 + 20 * 5)
    assert json.loads(head_file.read_text())["seq"] == 300


def test_concurrent_retries_record_an_event_once(store: AuditStore, backend: Backend) -> None:
    results = []
    start = threading.Barrier(20)

    def retry() -> None:
        start.wait()
        results.append(store.append(event("p-1", "submitted")))

    threads = [threading.Thread(target=retry) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 20
    assert sum(not r.duplicate for r in results) == 1
    assert {(r.seq, r.hash) for r in results} == {(1, results[0].hash)}
    assert_one_unforked_chain(store, backend, 1)


def test_concurrent_calls_share_a_transaction_and_fail_alone(store: AuditStore, backend: Backend) -> None:
    """Calls arriving while a transaction is in flight are written by the next one together,
    each call's events contiguous and in order; a call whose event conflicts fails alone."""
    store.append(event("p-conflict", "submitted"))
    group = store._group
    write = group._write
    first = threading.Event()

    def held(events: list) -> list:  # type: ignore[type-arg]
        # The first transaction waits until five more calls are queued behind it.
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 10
            while len(group._queue) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
        return write(events)

    group._write = held
    outcomes: dict[str, object] = {}

    def call(name: str, events: list) -> None:  # type: ignore[type-arg]
        try:
            outcomes[name] = store.append_many(events)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=("lead", [event("p-lead", "submitted")]))]
    threads[0].start()
    assert first.wait(10)
    for n in range(4):
        threads.append(
            threading.Thread(
                target=call, args=(f"c{n}", [event(f"p{n}", "submitted", n=i) for i in range(1, 4)])
            )
        )
    # Same event id as the stored one, other content: refused, and only this call.
    threads.append(threading.Thread(target=call, args=("bad", [event("p-conflict", "submitted", seconds=5)])))
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert isinstance(outcomes["bad"], EventIdConflict), outcomes["bad"]
    for n in range(4):
        results = outcomes[f"c{n}"]
        assert isinstance(results, list) and [r.duplicate for r in results] == [False] * 3
        seqs = [r.seq for r in results]
        assert seqs == list(range(seqs[0], seqs[0] + 3)), seqs  # together, in order
    assert group.grouped_calls >= 5  # the five queued calls were offered one transaction
    assert_one_unforked_chain(store, backend, 1 + 1 + 12)

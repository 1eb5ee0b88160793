"""Concurrent writers, in threads and in separate processes, never fork the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from interlock.audit.store import AuditStore
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

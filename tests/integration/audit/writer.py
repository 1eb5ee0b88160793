"""Appends audit events from a separate OS process, for the concurrency tests.

    python -m tests.integration.audit.writer URL HEAD_FILE PREFIX THREADS EVENTS_PER_THREAD

Prints "ready" once connected, waits for a line on stdin, then all threads append at once.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from interlock.audit.store import AuditStore
from tests.integration.audit.sample import event


def append_all(store: AuditStore, prefix: str, threads: int, per_thread: int) -> None:
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            store.append(event(f"{prefix}-{t}", "submitted", i, n=i + 1))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def main() -> None:
    url, head, prefix, threads, per_thread = sys.argv[1:6]
    with AuditStore(url, Path(head)) as store:
        store.migrate()
        print("ready", flush=True)
        sys.stdin.readline()
        append_all(store, prefix, int(threads), int(per_thread))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Fill an audit store with realistic proposals' events (a valid chain), for benchmarks.

    .venv/bin/python scripts/make_audit_events.py --url postgresql+psycopg://postgres@127.0.0.1/db \
        --events 1000000 --bench
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from interlock.audit.chain import (
    AT_FORMAT,
    GENESIS,
    HASHED_COLUMNS,
    canonical_json,
    canonical_record,
    chain_hash,
)
from interlock.audit.metrics import compute_metrics
from interlock.audit.store import APPEND_LOCK_KEY, AuditStore

log = logging.getLogger("make_audit_events")

RECOMMENDERS = {
    "opsgpt": ["opsgpt-2025.09", "opsgpt-2025.11"],
    "sre-copilot": ["copilot-3.1", "copilot-3.2"],
    "runbook-bot": ["rb-1.4"],
}
ACTIONS = {
    "restart_service": "low",
    "rollback_release": "high",
    "scale_out": "medium",
    "clear_cache": "low",
    "rotate_logs": "low",
}
SERVICES = ["checkout-api", "payments", "search", "inventory", "auth", "notifications"]
APPROVERS = ["alice", "bob", "carol", "dave", "erin"]

# Column order of every generated row (after seq, prev_hash and hash).
COLUMNS = HASHED_COLUMNS  # the table's columns after seq/prev_hash/hash, in chain order


def proposal_events(rng: random.Random, run: str, n: int, submitted: datetime) -> Iterator[tuple[Any, ...]]:
    """One proposal's events, as COLUMNS tuples in the order they happen."""
    pid = f"prop-{run}-{n:07d}"
    recommender = rng.choice(list(RECOMMENDERS))
    model = rng.choice(RECOMMENDERS[recommender])
    action = rng.choice(list(ACTIONS))
    tier = ACTIONS[action] if rng.random() < 0.8 else rng.choice(["medium", "high", "critical"])
    service = rng.choice(SERVICES)
    trace = f"{rng.getrandbits(128):032x}"
    t = 0.0
    counts: dict[str, int] = {}

    def event(kind: str, actor: str | None, status: str | None, data: dict[str, Any]) -> tuple:
        counts[kind] = counts.get(kind, 0) + 1
        at = (submitted + timedelta(seconds=t)).strftime(AT_FORMAT)
        return (
            action,
            actor,
            at,
            canonical_json(data),
            f"{pid}/{kind}/{counts[kind]}",
            kind,
            model,
            pid,
            recommender,
            tier,
            service,
            status,
            trace,
        )

    yield event("submitted", recommender, "submitted", {"confidence": round(rng.random(), 2)})
    t += rng.uniform(0.5, 5)
    evidence_ok = rng.random() > 0.05
    yield event("evidence_checked", None, "checking", {"ok": evidence_ok, "items": 2})
    if not evidence_ok:
        yield event("final", None, "rejected_by_checks", {"reasons": ["stale evidence"]})
        return
    t += rng.uniform(0.1, 1)
    yield event("risk_assessed", None, "previewing", {"score": rng.randint(5, 90), "tier": tier})
    t += rng.uniform(10, 60)
    yield event("preview", None, "awaiting_approval", {"ok": True, "changed": rng.randint(0, 3)})
    if rng.random() < 0.02:
        t += rng.uniform(1, 30)
        yield event("decision_refused", "mallory", None, {"reason": "not on the roster"})
    if tier == "low" and rng.random() < 0.5:
        t += 0.1
        decision = {"decision": "approve", "approver": "policy:auto", "reason": "low risk"}
        yield event("decision", "policy:auto", "executing", {**decision, "signed": False, "human": False})
    else:
        if rng.random() < 0.1:
            t += rng.uniform(600, 3600)
            yield event("escalated", None, "awaiting_approval", {"to": "on-call-lead"})
        if rng.random() < 0.03:
            t += rng.uniform(3600, 86400)
            yield event("final", None, "expired", {})
            return
        t += rng.lognormvariate(6, 1)  # minutes to hours for a person to look
        approver = rng.choice(APPROVERS)
        if rng.random() < 0.15:
            data = {"decision": "reject", "approver": approver, "reason": "wrong fix"}
            yield event("decision", approver, "rejected", {**data, "signed": True, "human": True})
            yield event("final", None, "rejected", {})
            return
        data = {"decision": "approve", "approver": approver, "reason": "looks right"}
        yield event("decision", approver, "executing", {**data, "signed": True, "human": True})
    if rng.random() < 0.03:
        yield event("paused", "alice", "paused", {})
        t += rng.uniform(60, 600)
        yield event("resumed", "alice", "executing", {})
    t += rng.uniform(1, 5)
    yield event("execution_started", None, "executing", {})
    t += rng.uniform(5, 120)
    tasks = [{"task": "restart", "status": "changed"}, {"task": "wait", "status": "ok"}]
    if rng.random() < 0.005:
        yield event("security", None, None, {"violation": "host outside scope"})
    yield event("execution_finished", None, "verifying", {"tasks": tasks, "ok": True})
    t += rng.uniform(10, 60)
    roll = rng.random()
    yield event("verification", None, "verifying", {"ok": roll >= 0.08})
    if roll < 0.05:
        t += rng.uniform(10, 60)
        yield event("rollback", None, "rolling_back", {"ok": True})
        yield event("final", None, "rolled_back", {})
    elif roll < 0.07:
        yield event("final", None, "completed_unresolved", {})
    elif roll < 0.08:
        yield event("final", None, "needs_manual_intervention", {})
    else:
        yield event("final", None, "completed", {})


def generate(count: int, seed: int, days: float, start_seq: int, prev: str) -> Iterator[tuple]:
    """Rows (seq, prev_hash, hash, *COLUMNS) forming a valid chain after (start_seq, prev)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    now_text = now.strftime(AT_FORMAT)
    window = timedelta(days=days)
    run = f"{seed:x}{start_seq:x}"  # so a second run into the same store gets new event ids
    seq, n = start_seq, 0
    while True:
        n += 1
        # Submissions spread evenly over the window as the rows fill up; the newest are open.
        submitted = now - window + window * ((seq - start_seq) / count)
        # What has not happened yet is left out, so the newest proposals are still open.
        events = [e for e in proposal_events(rng, run, n, submitted) if e[2] <= now_text]
        for columns in events:
            seq += 1
            digest = chain_hash(prev, canonical_record(*columns))
            yield (seq, prev, digest, *columns)
            prev = digest
            if seq - start_seq >= count:
                return


def load(store: AuditStore, count: int, seed: int, days: float) -> tuple[int, str]:
    """Append `count` events after the chain's current end, under the append lock."""
    names = ", ".join(("seq", "prev_hash", "hash", *COLUMNS))
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            conn.execution_options(audit_write=True)
        with conn.begin():
            if store.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY})
            last = conn.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")).first()
            start, prev = (last[0], last[1]) if last else (0, GENESIS)
            rows = generate(count, seed, days, start, prev)
            dbapi = conn.connection.driver_connection
            final: tuple = (start, prev)
            if store.dialect == "postgresql":
                with dbapi.cursor() as cur, cur.copy(f"COPY audit_events ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        final = row
            else:
                cur = dbapi.cursor()
                marks = ", ".join("?" * (3 + len(COLUMNS)))
                batch: list[tuple] = []
                for row in rows:
                    batch.append(row)
                    if len(batch) == 20_000:
                        cur.executemany(f"INSERT INTO audit_events ({names}) VALUES ({marks})", batch)
                        batch.clear()
                    final = row
                if batch:
                    cur.executemany(f"INSERT INTO audit_events ({names}) VALUES ({marks})", batch)
    return final[0], final[1]


def analyze(store: AuditStore) -> None:
    # Fresh statistics and a visibility map, as autovacuum would give a long-running store.
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("VACUUM ANALYZE audit_events"))
        else:
            conn.exec_driver_sql("ANALYZE")


def bench(store: AuditStore) -> None:
    for label, kwargs in (
        ("metrics, all time", {}),
        ("metrics, all time, by recommender", {"by": "recommender"}),
        ("metrics, last 7 days", {"since": timedelta(days=7)}),
        ("metrics, last 24 hours by action", {"since": timedelta(hours=24), "by": "action"}),
    ):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            metrics = compute_metrics(store, **kwargs)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
        log.info(
            "%s: best %.3f s, worst %.3f s (%d proposals, backlog %d)",
            label,
            min(times),
            max(times),
            metrics["overall"]["proposals"],
            metrics["overall"]["backlog"],
        )
    report = store.verify()
    log.info(
        "verify: %d events in %.2f s = %.0f events/s, ok=%s",
        report.events,
        report.elapsed_seconds,
        report.rate_per_s,
        report.ok,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="audit database URL (sqlite or postgresql)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=90.0, help="history to spread them over")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--head-file", type=Path, help="advance this head file to the new end")
    parser.add_argument("--bench", action="store_true", help="then time metrics and verify")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    with AuditStore(args.url, head_file=args.head_file) as store:
        store.migrate()
        started = time.perf_counter()
        seq, digest = load(store, args.events, args.seed, args.days)
        store.advance_head(seq, digest)
        loaded = time.perf_counter() - started
        log.info("%d events loaded in %.1f s; chain ends at row %d", args.events, loaded, seq)
        analyze(store)
        if args.bench:
            bench(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())

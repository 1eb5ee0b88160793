"""Cost as work grows: the scale, audit, replay and storm figures at three sizes each, and how they grow.

Each figure is measured at every size (a row per size) and classified by one rule (`classify`):
the exponent k of the least-squares line through log(cost) against log(size), where the cost is
the figure itself for a time or a memory, and its inverse (the time per item) for a rate. k is 0
for a figure that does not move with the size and 1 for one that grows in proportion to it. The
growth row puts the word for k beside what the figure should do, and says met or missed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from bench.measure import Figure, percentile
from bench.stack import kill_process, rss_mb, start_worker_process
from interlock import search
from interlock.models import ProposalStatus

if TYPE_CHECKING:
    from bench.benchmarks import BenchContext

log = logging.getLogger("bench.growth")
NOOP = "no-op Ansible activities (benchmark stand-in)"

# Upper bounds of k for each word, in order; above the last: "worse than linear".
WORDS: tuple[tuple[float, str], ...] = ((-0.2, "falls"), (0.2, "flat"), (0.8, "sublinear"), (1.2, "linear"))
WORSE = "worse than linear"
# What a figure should do, as the largest k that still meets it.
EXPECTED = {"flat": 0.2, "linear or better": 1.2}

RULE = """## How growth is classified

Each growth row fits a line through the figure's points at its sizes on log-log axes (least
squares): the slope k says how the cost grows with the size n (cost ~ n^k). The cost is the
figure itself for a time or a memory, and the time per item (1 / rate) for a rate, so a rate that
holds is flat. Words: k < -0.2 falls, -0.2..0.2 flat, 0.2..0.8 sublinear, 0.8..1.2 linear, above 1.2
worse than linear. An expectation of "flat" is met for k <= 0.2, "linear or better" for k <= 1.2.
Worker memory is judged only on the sizes at or above the workflow cache (the worker keeps at
most that many workflows, so it should stop growing there); with fewer than two such sizes, on
all of them. At the tiny sizes of `--quick` the words check the code, not the engine."""


def classify(k: float) -> str:
    for bound, word in WORDS:
        if k <= bound:
            return word
    return WORSE


def growth_exponent(sizes: Sequence[float], values: Sequence[float], *, rate: bool = False) -> float:
    """Least-squares slope of log(cost) on log(size); cost = 1/value for a rate."""
    if len(sizes) != len(values) or len(sizes) < 2:
        raise ValueError("need a value at two sizes or more")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(1 / v if rate else v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        raise ValueError("the sizes must differ")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


@dataclass
class Series:
    """One figure measured at several sizes."""

    group: str  # "waiting", "audit", ...
    metric: str
    unit: str
    expected: str  # a key of EXPECTED
    size_label: str  # "{n:,} waiting"
    rate: bool = False
    floor: float = 0.0  # values below it count as it (a latency clamped at 0 ms has no log)
    base: float = 0.0  # judged on value - base (memory above the idle worker's)
    judged_from: int = 0  # only sizes >= this are judged (0: all)
    judged_note: str = ""

    def rows(self, points: list[tuple[int, list[float]]], size_note: str = "") -> list[Figure]:
        figures = [
            Figure(
                f"growth: {self.group}",
                self.metric,
                self.unit,
                samples,
                size=self.size_label.format(n=f"{n:,}") + (f", {size_note}" if size_note else ""),
            )
            for n, samples in points
        ]
        judged = [(n, s) for n, s in points if n >= self.judged_from]
        note = self.judged_note
        if self.judged_from:
            if len(judged) >= 2:
                note += f", at the sizes at or above the workflow cache ({self.judged_from})"
            else:
                judged = points
                note += f", at all sizes (fewer than two at or above the workflow cache, {self.judged_from})"
        values = [max(self.floor, percentile(s, 50) - self.base) for _, s in judged]
        k = growth_exponent([n for n, _ in judged], values, rate=self.rate)
        word = classify(k)
        met = k <= EXPECTED[self.expected]
        figures.append(
            Figure(
                f"growth: {self.group}",
                f"{self.metric}: growth",
                "count",
                [k],
                text=f"{word} (k = {k:+.2f})",
                target=f"{self.expected}",
                met=met,
                judged_on=f"k over {' / '.join(f'{n:,}' for n, _ in judged)}",
                size=" / ".join(self.size_label.format(n=f"{n:,}") for n, _ in points),
                note="; ".join(
                    p
                    for p in (
                        f"medians {' / '.join(f'{percentile(s, 50):.4g}' for _, s in points)} {self.unit}",
                        note,
                    )
                    if p
                ),
            )
        )
        return figures


def _ascending(sizes: Sequence[int]) -> list[int]:
    ordered = sorted(set(sizes))
    if len(ordered) < 2:
        raise ValueError(f"growth needs two sizes or more, got {list(sizes)}")
    return ordered


# --- waiting proposals: worker memory and decision latency ---------------------------------------


async def _awaiting_count(ctx: BenchContext, queue: str) -> int:
    query = (
        f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running' "
        f"AND {search.SA_STATUS.name} = '{ProposalStatus.AWAITING_APPROVAL.value}'"
    )
    return (await ctx.client.count_workflows(query)).count


async def growth_waiting(ctx: BenchContext, sizes: Sequence[int]) -> list[Figure]:
    """One backlog grown in place on one worker process: measured at each size on the way up."""
    from bench.benchmarks import measure_decisions, settle_many, wait_for_log

    queue = f"growth-{uuid.uuid4().hex[:8]}"
    record = ctx.workdir / f"{queue}-executions.jsonl"
    log_path = ctx.workdir / f"{queue}.log"
    proc = start_worker_process(
        ctx.settings,
        queue,
        log_path,
        [sys.executable, "-m", "bench.worker", "--noop-playbooks", "--record", str(record)],
    )
    starts: dict[str, float] = {}

    async def started_at(pid: str) -> float:
        while pid not in starts:
            if record.exists():
                for line in record.read_text().splitlines():
                    row = json.loads(line)
                    starts[row["proposal_id"]] = float(row["at"])
            if pid not in starts:
                await asyncio.sleep(0.005)
        return starts[pid]

    rng = random.Random(8)
    waiting: list[str] = []
    rss: list[tuple[int, list[float]]] = []
    latency: list[tuple[int, list[float]]] = []
    settle: list[tuple[int, list[float]]] = []
    try:
        await wait_for_log(log_path, proc)
        rss_idle = rss_mb(proc.pid)
        for n in _ascending(sizes):
            log.info("growth_waiting: %d waiting", n)
            started = time.perf_counter()
            added = n - len(waiting)
            waiting += await settle_many(ctx, queue, added, f"grow{n}")
            settle.append((n, [added / (time.perf_counter() - started)]))
            rss.append((n, [rss_mb(proc.pid)]))
            chosen = rng.sample(waiting, min(ctx.sizes.scale_samples, len(waiting)))
            from_return, _ = await measure_decisions(ctx, chosen, started_at)
            latency.append((n, [x * 1000 for x in from_return]))
            decided = set(chosen)
            waiting = [p for p in waiting if p not in decided]
            # settle_many counts the backlog from visibility: let it see the decided ones leave.
            deadline = time.monotonic() + 120
            while await _awaiting_count(ctx, queue) != len(waiting) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
    finally:
        kill_process(proc)
    cache = ctx.settings.max_cached_workflows
    return [
        *Series(
            "waiting",
            "worker resident memory once all are waiting",
            "MB",
            "flat",
            "{n} waiting",
            floor=1.0,
            base=rss_idle,
            judged_from=cache,
            judged_note=f"judged on the memory above the idle worker's ({rss_idle:.0f} MB)",
        ).rows(rss, f"idle {rss_idle:.0f} MB, cache {cache} workflows, {NOOP}"),
        *Series(
            "waiting",
            "decision latency on a random waiting one (Update return -> execution start)",
            "ms",
            "flat",
            "{n} waiting",
            floor=1.0,
        ).rows(latency, f"{ctx.sizes.scale_samples} random ones"),
        *Series(
            "waiting",
            "proposals settled into awaiting_approval per second (building the backlog)",
            "/s",
            "flat",
            "{n} waiting",
            rate=True,
        ).rows(settle),
    ]


# --- the audit store: metrics query and verify rate -----------------------------------------------


class _AuditFiller:
    """scripts/make_audit_events.py's load, in this process: append events, then ANALYZE."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def fill(self, url: str, count: int, seed: int) -> None:
        from interlock.audit.store import AuditStore

        with AuditStore(url) as store:
            store.migrate()
            seq, digest = self.module.load(store, count, seed, 90.0)
            store.advance_head(seq, digest)
            self.module.analyze(store)


def _audit_filler(script: Path) -> _AuditFiller:
    spec = importlib.util.spec_from_file_location("make_audit_events", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _AuditFiller(module)


async def growth_audit(ctx: BenchContext, sizes: Sequence[int]) -> list[Figure]:
    """One store filled in place: events appended up to each size, then measured."""
    from bench.benchmarks import REPO, audit_database
    from interlock.audit.metrics import compute_metrics
    from interlock.audit.store import AuditStore

    query: list[tuple[int, list[float]]] = []
    verify: list[tuple[int, list[float]]] = []
    async with audit_database(ctx) as (url, label):
        filler = _audit_filler(REPO / "scripts" / "make_audit_events.py")
        loaded = 0
        for n in _ascending(sizes):
            # In this process (one interpreter start less per size): the chain goes on from its end.
            await asyncio.to_thread(filler.fill, url, n - loaded, n)
            loaded = n
            times: list[float] = []
            rates: list[float] = []
            with AuditStore(url) as store:
                for _ in range(ctx.sizes.runs):
                    t = time.perf_counter()
                    compute_metrics(store)
                    times.append(time.perf_counter() - t)
                    report = store.verify()
                    assert report.ok and report.events == n, (report.events, report.problems[:3])
                    rates.append(report.rate_per_s)
            query.append((n, times))
            verify.append((n, rates))
    where = f"scripts/make_audit_events.py, {label}"
    return [
        *Series(
            "audit",
            "`interlock metrics` query (compute_metrics, all time)",
            "s",
            "linear or better",
            "{n} events",
        ).rows(query, where),
        *Series("audit", "`interlock audit verify` rate", "events/s", "flat", "{n} events", rate=True).rows(
            verify, where
        ),
    ]


# --- bulk replay ----------------------------------------------------------------------------------


async def growth_replay(ctx: BenchContext, sizes: Sequence[int]) -> list[Figure]:
    """`replay_many` as `interlock audit replay --all` runs it, over ever more histories."""
    from bench.benchmarks import REPO
    from interlock.audit.history import default_jobs, load_history, replay_many

    stored = sorted((REPO / "tests" / "histories").glob("*.json"))
    histories = [load_history(p.read_text(), p.stem) for p in stored] + ctx.histories
    jobs = default_jobs()
    points: list[tuple[int, list[float]]] = []
    for n in _ascending(sizes):
        batch = (histories * (n // len(histories) + 1))[:n]
        rates: list[float] = []
        for _ in range(ctx.sizes.runs):
            log.info("growth_replay: %d histories", n)
            started = time.perf_counter()
            outcomes = await replay_many(batch, jobs=jobs, sandboxed=False)
            rates.append(n / (time.perf_counter() - started))
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:1]
        points.append((n, rates))
    return Series(
        "replay",
        f"replay rate, `interlock audit replay --all` (unsandboxed, --jobs {jobs}, with process start-up)",
        "histories/s",
        "flat",
        "{n} histories",
        rate=True,
    ).rows(points, f"copies of the {len(histories)} in tests/histories and this run's")


# --- the alert storm --------------------------------------------------------------------------------


async def growth_storm(ctx: BenchContext, sizes: Sequence[int]) -> list[Figure]:
    """A storm of each size for the same number of incidents, each within the same seconds."""
    from bench.storm import run_storm

    incidents = ctx.sizes.storm_incidents
    seconds = ctx.sizes.storm_seconds
    server = ctx.server.proc.pid if ctx.server.proc is not None else None
    settle: list[tuple[int, list[float]]] = []
    response: list[tuple[int, list[float]]] = []
    memory: list[tuple[int, list[float]]] = []
    broken: list[str] = []
    for n in _ascending(sizes):
        result = await run_storm(
            ctx.client,
            ctx.workdir / f"growth-storm-{n}",
            ctx.lab.root,
            ctx.server.address,
            proposals=n,
            incidents=min(incidents, n),
            seconds=seconds,
            server_pid=server,
        )
        broken += [f"{n}: {p}" for p in result.problems]
        settle.append((n, [result.all_awaiting_seconds]))
        response.append((n, [percentile(result.response_seconds, 99) * 1000]))
        memory.append((n, [result.rss_peak]))
    if broken:
        raise RuntimeError(f"storm invariants broken: {'; '.join(broken)[:500]}")
    where = f"{incidents} incidents, within {seconds} s, {NOOP}"
    return [
        *Series(
            "storm", "time until every owner is awaiting_approval", "s", "linear or better", "{n} proposals"
        ).rows(settle, where),
        *Series("storm", "p99 time to first response (POST -> answer)", "ms", "flat", "{n} proposals").rows(
            response
        ),
        *Series("storm", "worker resident memory (peak)", "MB", "flat", "{n} proposals").rows(memory),
    ]


# name -> (the Sizes field with its sizes, the measurement). Each is a benchmark of its own
# (`--only growth_audit`), so a long run stopped midway keeps the series that finished.
GROWTH: dict[str, tuple[str, Callable[[BenchContext, Sequence[int]], Awaitable[list[Figure]]]]] = {
    "growth_waiting": ("growth_waiting", growth_waiting),
    "growth_audit": ("growth_audit_events", growth_audit),
    "growth_replay": ("growth_replays", growth_replay),
    "growth_storm": ("growth_storm", growth_storm),
}

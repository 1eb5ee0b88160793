"""The benchmarks: each measures Interlock beside its floor, in the same run, on the same server.

Every benchmark takes the shared BenchContext and a Sizes, and returns Figures for RESULTS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Worker

from bench import ansible_tasks
from bench.bare import BareInput, BareWorkflow, bare_step
from bench.measure import (
    Figure,
    RoundTrips,
    activity_durations,
    approval_breakdown,
    cpu_seconds,
    percentile,
    round_trips,
    shape_around_update,
)
from bench.noop import FAIL_VERIFY, NoopPlaybooks
from bench.stack import DevServer, kill_process, make_settings, rss_mb, start_worker_process
from bench.storm import bench_storm
from interlock import search
from interlock.activities.ansible import PlaybookRunner, playbooks_digest
from interlock.examples import example_proposal
from interlock.lab import Lab
from interlock.models import DecisionInput, PlaybookRun, ProposalStatus, Stage
from interlock.policy import load_policy
from interlock.proposals import decide, get_state, parse_proposal, submit, wait_until_final
from interlock.settings import Settings
from interlock.worker.main import build_worker

log = logging.getLogger("bench")
REPO = Path(__file__).resolve().parent.parent
NOOP = "no-op Ansible activities (benchmark stand-in)"
CALL_NOTE = (
    "the `approve` Update answers only once the workflow has acted on it: after the pre-execution "
    "re-check activity and the audit write of the decision and execution_started (one activity), "
    "in the workflow task that schedules the execution; so the Update's return is within a few ms "
    "of the start, and the approver-visible latency is the Update's own round trip (2 activities, "
    "3 workflow tasks)"
)


@dataclass
class Sizes:
    runs: int = 3  # repetitions of each timed figure
    throughput: int = 60  # proposals per engine-overhead run
    waiting: int = 500  # proposals waiting while decision latency is measured
    latency_samples: int = 30
    ansible_runs: int = 5
    scale: int = 10_000  # proposals awaiting approval for the scale benchmark
    scale_samples: int = 20
    audit_events: int = 1_000_000
    replays: int = 200
    drill_proposals: int = 200  # proposals waiting while the drills kill things (5 run)
    storm: int = 1000  # proposals in the alert storm, from 5 recommenders
    storm_incidents: int = 40
    storm_seconds: int = 10  # the storm arrives within this
    # --growth: each series at these sizes (ascending; an empty list leaves the series out)
    growth_waiting: tuple[int, ...] = (100, 1_000, 10_000)
    growth_audit_events: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    growth_replays: tuple[int, ...] = (100, 300, 1_000)
    growth_storm: tuple[int, ...] = (100, 300, 1_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            runs=1,
            throughput=4,
            waiting=5,
            latency_samples=3,
            ansible_runs=1,
            scale=10,
            scale_samples=2,
            audit_events=2_000,
            replays=10,
            drill_proposals=6,
            storm=50,
            storm_incidents=5,
            storm_seconds=2,
            growth_waiting=(2, 4, 8),  # each size's backlog costs a few seconds of settling
            growth_audit_events=(500, 1_000, 2_000),
            growth_replays=(5, 10, 20),
            # Three storms would add half a minute to the quick test; test_storm covers the storm.
            growth_storm=(),
        )


@dataclass
class BenchContext:
    workdir: Path
    server: DevServer
    client: Client
    lab: Lab
    settings: Settings
    sizes: Sizes
    database_url: str | None
    histories: list[WorkflowHistory] = field(default_factory=list)
    shape: tuple[int, int] | None = None
    quick: bool = False


# --- driving proposals ---------------------------------------------------------------------------


def proposal_doc(pid: str, observed_at: datetime | None = None, service: str = "checkout-api") -> dict:
    # An incident of its own: proposals sharing one would be attached to the first as duplicates.
    return example_proposal(
        "restart_service", proposal_id=pid, service=service, observed_at=observed_at, incident=f"INC-{pid}"
    )


async def start_proposal(ctx: BenchContext, task_queue: str, pid: str, **kw: Any) -> None:
    policy = load_policy(ctx.settings.effective_policy_file)
    await submit(ctx.client, parse_proposal(proposal_doc(pid, **kw), policy), task_queue, policy)


async def wait_status(
    client: Client, pid: str, wanted: set[ProposalStatus], interval: float = 0.1, timeout: float = 600
) -> float:
    """Poll the status query until it is one of `wanted`; returns the time.time() it was seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await get_state(client, pid)
            if state.status in wanted:
                return time.time()
            if state.status.is_final:
                raise RuntimeError(f"{pid} ended {state.status.value}: {state.reasons}")
        except RuntimeError:
            raise
        except Exception as exc:  # the first workflow task may not have run yet
            if "not started" not in str(exc).lower() and "precondition" not in str(exc).lower():
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pid} not in {wanted} after {timeout}s")
        await asyncio.sleep(interval)


async def approve(client: Client, pid: str, approver: str = "alice") -> Any:
    return await decide(client, pid, "approve", DecisionInput(approver=approver, reason="benchmark"))


async def gather_limited(coros: list[Awaitable[Any]], limit: int = 50) -> list[Any]:
    slots = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Any]) -> Any:
        async with slots:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


@asynccontextmanager
async def noop_worker(
    ctx: BenchContext, settings: Settings | None = None
) -> AsyncIterator[tuple[str, NoopPlaybooks]]:
    settings = settings or ctx.settings
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    noop = NoopPlaybooks(settings)
    async with build_worker(ctx.client, settings, queue, stand_in=[noop.run_playbook, noop.run_change]):
        yield queue, noop


@asynccontextmanager
async def real_worker(ctx: BenchContext) -> AsyncIterator[str]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with build_worker(ctx.client, ctx.settings, queue):
        yield queue


def new_id(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:8]}"


async def history(client: Client, pid: str) -> WorkflowHistory:
    return await client.get_workflow_handle(pid).fetch_history()


# --- round trips ---------------------------------------------------------------------------------


def short_expiry_settings(ctx: BenchContext, seconds: int = 2) -> Settings:
    home = ctx.workdir / "home-expiry"
    settings = make_settings(home, ctx.lab.root, ctx.server.address)
    policy = yaml.safe_load((home / "policy.yaml").read_text())
    policy["actions"]["restart_service"]["approval_timeout"] = f"{seconds}s"
    (home / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return settings


async def bench_round_trips(ctx: BenchContext) -> list[Figure]:
    """Workflow tasks, activities and timers per proposal, per final status (no-op playbooks)."""
    counts: dict[str, RoundTrips] = {}
    async with noop_worker(ctx) as (queue, _):
        ids = {
            "completed": new_id("rt-ok"),
            "rolled_back": new_id(f"rt-{FAIL_VERIFY}"),
            "rejected": new_id("rt-reject"),
            "rejected_by_checks": new_id("rt-stale"),
        }
        stale = datetime.now(UTC) - timedelta(hours=3)
        for status, pid in ids.items():
            await start_proposal(
                ctx, queue, pid, **({"observed_at": stale} if status == "rejected_by_checks" else {})
            )
        for status in ("completed", "rolled_back"):
            await wait_status(ctx.client, ids[status], {ProposalStatus.AWAITING_APPROVAL})
            await approve(ctx.client, ids[status])
        await wait_status(ctx.client, ids["rejected"], {ProposalStatus.AWAITING_APPROVAL})
        await decide(ctx.client, ids["rejected"], "reject", DecisionInput(approver="alice", reason="no"))
        for status, pid in ids.items():
            final = await wait_until_final(ctx.client, pid, timeout=120)
            assert final.status.value == status, (status, final.status, final.reasons)
            h = await history(ctx.client, pid)
            ctx.histories.append(h)
            counts[status] = round_trips(h)
            if status == "completed":
                ctx.shape = shape_around_update(h)
    expiry = short_expiry_settings(ctx)
    async with noop_worker(ctx, expiry) as (queue, _):
        pid = new_id("rt-expire")
        await start_proposal(ctx, queue, pid)
        final = await wait_until_final(ctx.client, pid, timeout=120)
        assert final.status is ProposalStatus.EXPIRED, final.status
        h = await history(ctx.client, pid)
        ctx.histories.append(h)
        counts["expired"] = round_trips(h)
    figures = []
    for status, rt in counts.items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(rt.activity_types.items()))
        figures.append(
            Figure(
                "round trips",
                f"{status}: workflow tasks / activities / timers / updates",
                "count",
                [float(rt.workflow_tasks)],
                text=f"{rt.workflow_tasks} / {rt.activities} / {rt.timers} / {rt.updates}",
                note=f"{rt.events} history events; activities: {kinds}",
                size="1 proposal, " + NOOP,
            )
        )
    return figures


# --- engine overhead -----------------------------------------------------------------------------


async def awaiting_ids(client: Client, queue: str) -> set[str]:
    """Open workflows on a task queue that say (search attribute) they await approval.

    One visibility query instead of a status query per workflow: a query is a workflow task
    on the worker, and hundreds of them a second would be the load being measured.
    """
    query = (
        f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running' "
        f"AND {search.SA_STATUS.name} = '{ProposalStatus.AWAITING_APPROVAL.value}'"
    )
    return {wf.id async for wf in client.list_workflows(query)}


async def fail_on_ended(client: Client, queue: str, pending: set[str]) -> None:
    """A proposal that ended before it awaited approval will never await it: stop and say why."""
    query = f"TaskQueue = '{queue}' AND ExecutionStatus != 'Running' AND WorkflowType = 'RemediationWorkflow'"
    ended = [wf.id async for wf in client.list_workflows(query) if wf.id in pending]
    if ended:
        state = await get_state(client, ended[0])
        raise RuntimeError(
            f"{len(ended)} proposal(s) ended before awaiting approval, e.g. {ended[0]} "
            f"{state.status.value}: {state.reasons}"
        )


async def approve_as_they_wait(
    client: Client, queue: str, ids: list[str], decide_one: Callable[[str], Awaitable[Any]]
) -> None:
    """Approve each of `ids` as soon as visibility shows it awaiting approval."""
    pending = set(ids)
    tasks: list[asyncio.Task[Any]] = []
    rounds = 0
    while pending:
        ready = await awaiting_ids(client, queue) & pending
        pending -= ready
        tasks += [asyncio.create_task(decide_one(pid)) for pid in ready]
        if pending:
            rounds += 1
            if rounds % 25 == 0:
                await fail_on_ended(client, queue, pending)
            await asyncio.sleep(0.2)
    await asyncio.gather(*tasks)


async def drive_interlock(ctx: BenchContext, queue: str, n: int) -> float:
    ids = [new_id("tp") for _ in range(n)]
    started = time.perf_counter()
    await gather_limited([start_proposal(ctx, queue, p) for p in ids])
    await approve_as_they_wait(ctx.client, queue, ids, lambda pid: approve(ctx.client, pid))
    finals = await asyncio.gather(*(wait_until_final(ctx.client, p, timeout=1800) for p in ids))
    elapsed = time.perf_counter() - started
    bad = [(f.proposal.proposal_id, f.status) for f in finals if f.status is not ProposalStatus.COMPLETED]
    assert not bad, bad[:3]
    ctx.histories.append(await history(ctx.client, ids[0]))
    return n / elapsed


async def drive_bare(ctx: BenchContext, queue: str, n: int, before: int, after: int) -> float:
    ids = [new_id("bare") for _ in range(n)]
    started = time.perf_counter()
    handles = await gather_limited(
        [
            ctx.client.start_workflow(
                BareWorkflow.run, BareInput(before=before, after=after), id=pid, task_queue=queue
            )
            for pid in ids
        ]
    )

    async def approve_bare(pid: str) -> Any:
        return await ctx.client.get_workflow_handle(pid).execute_update(BareWorkflow.approve, "alice")

    await approve_as_they_wait(ctx.client, queue, ids, approve_bare)
    results = await asyncio.gather(*(h.result() for h in handles))
    elapsed = time.perf_counter() - started
    assert all(r == "completed" for r in results), results[:3]
    return n / elapsed


async def bench_engine_overhead(ctx: BenchContext) -> list[Figure]:
    before, after = ctx.shape or (6, 8)
    sizes = ctx.sizes
    interlock: list[float] = []
    bare: list[float] = []
    cpu = {"server": 0.0, "python": 0.0}
    bare_queue = f"bare-{uuid.uuid4().hex[:8]}"
    bare_worker = Worker(ctx.client, task_queue=bare_queue, workflows=[BareWorkflow], activities=[bare_step])
    async with noop_worker(ctx) as (queue, _), bare_worker:
        for _ in range(sizes.runs):
            # Alternate, so drift on a shared machine hits both alike.
            s0, p0 = cpu_seconds(ctx.server.proc.pid if ctx.server.proc else None), cpu_seconds()
            interlock.append(await drive_interlock(ctx, queue, sizes.throughput))
            cpu["server"] += cpu_seconds(ctx.server.proc.pid if ctx.server.proc else None) - s0
            cpu["python"] += cpu_seconds() - p0
            bare.append(await drive_bare(ctx, bare_queue, sizes.throughput, before, after))
    ratio = percentile(interlock, 50) / percentile(bare, 50)
    return [
        Figure(
            "engine overhead",
            "proposals/s through the whole lifecycle",
            "/s",
            interlock,
            baseline=bare,
            baseline_label=f"bare Temporal workflow ({before}+{after} activities, 2 background, "
            "1 timer, 1 Update)",
            target="ratio >= 0.8",
            met=ratio >= 0.8,
            judged_on=f"ratio of medians {ratio:.2f}",
            size=f"{sizes.throughput} concurrent proposals x {sizes.runs} runs, {NOOP}",
            note=f"CPU during the Interlock runs: dev server {cpu['server']:.1f} s, "
            f"Python client+worker {cpu['python']:.1f} s",
        )
    ]


# --- decision latency ----------------------------------------------------------------------------


async def settle_many(ctx: BenchContext, queue: str, n: int, label: str, wave: int = 250) -> list[str]:
    """Start n proposals and wait until all of them await approval.

    In waves: a backlog builds up over time, not in one burst, and a burst far beyond the worker's
    workflow cache (INTERLOCK_MAX_CACHED_WORKFLOWS) makes every workflow task a cache miss and a
    replay, which would measure the burst, not the backlog. Counted, not listed: listing
    thousands of waiting proposals every second would be a load of its own on the server.
    """
    awaiting = (
        f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running' "
        f"AND {search.SA_STATUS.name} = '{ProposalStatus.AWAITING_APPROVAL.value}'"
    )
    ended = f"TaskQueue = '{queue}' AND ExecutionStatus != 'Running' AND WorkflowType = 'RemediationWorkflow'"
    base = (await ctx.client.count_workflows(awaiting)).count
    base_ended = (await ctx.client.count_workflows(ended)).count
    ids = [new_id(label) for _ in range(n)]
    deadline = time.monotonic() + 4 * 3600
    last_log = time.monotonic()
    for start in range(0, n, wave):
        batch = ids[start : start + wave]
        await gather_limited([start_proposal(ctx, queue, p) for p in batch], limit=50)
        while (waiting := (await ctx.client.count_workflows(awaiting)).count - base) < start + len(batch):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n - waiting} of {n} proposals never reached awaiting_approval")
            if (await ctx.client.count_workflows(ended)).count > base_ended:
                await fail_on_ended(ctx.client, queue, set(ids))
            await asyncio.sleep(0.5)
        if time.monotonic() - last_log > 60:
            log.info("%s: %d of %d awaiting approval", label, waiting, n)
            last_log = time.monotonic()
    return ids


async def measure_decisions(
    ctx: BenchContext, ids: list[str], started_at: Callable[[str], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """(update return -> execution start, update call -> execution start) in seconds, one at a time."""
    from_return: list[float] = []
    from_call: list[float] = []
    for pid in ids:
        t_call = time.time()
        result = await approve(ctx.client, pid)
        t_return = time.time()
        assert result.status is ProposalStatus.EXECUTING, result.status
        t_start = await started_at(pid)
        # The Update answers from the workflow task that schedules the execution, so the activity
        # may start before the answer reaches the caller: that is a latency of zero, not below it.
        from_return.append(max(0.0, t_start - t_return))
        from_call.append(t_start - t_call)
    return from_return, from_call


async def bench_decision_latency(ctx: BenchContext) -> list[Figure]:
    sizes = ctx.sizes
    async with noop_worker(ctx) as (queue, noop):
        await settle_many(ctx, queue, sizes.waiting, "wait")
        measured = await settle_many(ctx, queue, sizes.latency_samples, "lat")

        async def started_at(pid: str) -> float:
            while pid not in noop.execute_started:
                await asyncio.sleep(0.002)
            return noop.execute_started[pid]

        from_return, from_call = await measure_decisions(ctx, measured, started_at)
    p50, p99 = percentile(from_return, 50), percentile(from_return, 99)
    c50, c99 = percentile(from_call, 50), percentile(from_call, 99)
    return [
        Figure(
            "decision latency",
            "approve Update return -> execution activity start",
            "ms",
            [x * 1000 for x in from_return],
            target="p50 < 100 ms, p99 < 500 ms",
            met=p50 < 0.1 and p99 < 0.5,
            judged_on="p50 and p99",
            size=f"{sizes.latency_samples} decisions, {sizes.waiting} other proposals waiting, {NOOP}",
        ),
        Figure(
            "decision latency",
            "approve Update call -> execution activity start (the approver's view)",
            "ms",
            [x * 1000 for x in from_call],
            target="same target, applied to the approver's view",
            met=c50 < 0.1 and c99 < 0.5,
            judged_on="p50 and p99",
            size=f"same {sizes.latency_samples} decisions",
            note=CALL_NOTE,
        ),
    ]


# --- first response and Ansible overhead (real Ansible) -----------------------------------------


def plain_ansible(ctx: BenchContext, stage: Stage, change_id: str, then_verify: bool = False) -> float:
    """`ansible-playbook` alone for the same playbook, inventory and variables; wall seconds.
    `then_verify`: the run playbook and then the verify playbook in the same process (one
    `ansible-playbook` over a playbook importing both), the same work as Interlock's run_change."""
    runner = PlaybookRunner(ctx.settings)
    run = PlaybookRun(
        proposal_id=change_id, action="restart_service", stage=stage, service="checkout-api", parameters={}
    )
    policy = load_policy(ctx.settings.effective_policy_file)
    extra = runner.extra_vars(run, policy.actions[run.action], playbooks_digest(ctx.settings.playbooks_dir))
    if not then_verify:
        return ansible_tasks.plain(ctx.settings, "restart_service.yml", extra, check=stage is Stage.PREVIEW)
    project = ctx.settings.playbooks_dir / "project"
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "run_and_verify.yml"
        imports = [
            {"ansible.builtin.import_playbook": str(project / n)}
            for n in ("restart_service.yml", "restart_service_verify.yml")
        ]
        playbook.write_text(yaml.safe_dump(imports))
        return ansible_tasks.plain(ctx.settings, playbook, extra)


async def bench_ansible(ctx: BenchContext) -> list[Figure]:
    """First response (submission -> awaiting_approval), the execution activity against plain
    ansible-playbook doing the same work, and approval -> completed against one plain run."""
    sizes = ctx.sizes
    first: list[float] = []
    preview_activity: list[float] = []
    execution: list[float] = []
    execution_inside: list[float] = []
    approval_to_completed: list[float] = []
    plain_check: list[float] = []
    plain_run: list[float] = []
    plain_change: list[float] = []
    breakdown: dict[str, list[float]] = {}
    ctx.lab.reset()
    async with real_worker(ctx) as queue:
        for _ in range(sizes.ansible_runs):
            plain_check.append(await asyncio.to_thread(plain_ansible, ctx, Stage.PREVIEW, new_id("plain")))
            ctx.lab.degrade("checkout-api")  # each run's restart clears the incident
            pid = new_id("fr")
            t0 = time.time()
            await start_proposal(ctx, queue, pid)
            seen = await wait_status(ctx.client, pid, {ProposalStatus.AWAITING_APPROVAL}, interval=0.02)
            first.append(seen - t0)
            plain_run.append(await asyncio.to_thread(plain_ansible, ctx, Stage.EXECUTE, new_id("plain")))
            plain_change.append(
                await asyncio.to_thread(plain_ansible, ctx, Stage.EXECUTE, new_id("plain"), then_verify=True)
            )
            t1 = time.time()
            await approve(ctx.client, pid)
            done = await wait_status(ctx.client, pid, {ProposalStatus.COMPLETED}, interval=0.02)
            approval_to_completed.append(done - t1)
            final = await wait_until_final(ctx.client, pid, timeout=300)
            assert final.status is ProposalStatus.COMPLETED, final.reasons
            h = await history(ctx.client, pid)
            ctx.histories.append(h)
            [(preview_scheduled, preview_inside)] = activity_durations(h, "run_playbook")
            preview_activity.append(preview_inside)
            [(change_scheduled, _)] = activity_durations(h, "run_change")  # execute + verify, one run
            execution.append(change_scheduled)
            for part, seconds in approval_breakdown(h).items():
                breakdown.setdefault(part, []).append(seconds)
            assert final.execution is not None and final.verification is not None
            execution_inside.append(
                (final.verification.finished_at - final.execution.started_at).total_seconds()
            )
    per_task_count = await ansible_tasks.measure(ctx.workdir, ctx.settings, sizes.ansible_runs)
    over = percentile(first, 50) - percentile(plain_check, 50)
    ratio = percentile(execution, 50) / percentile(plain_change, 50)
    completed_ratio = percentile(approval_to_completed, 50) / percentile(plain_run, 50)
    return [
        Figure(
            "first response",
            "submission -> awaiting_approval (real check-mode preview)",
            "s",
            first,
            baseline=plain_check,
            baseline_label="plain `ansible-playbook --check --diff`, same playbook",
            target="<= +0.5 s over the baseline",
            met=over <= 0.5,
            judged_on=f"medians differ by {over:+.2f} s",
            size=f"{sizes.ansible_runs} proposals, one at a time, real Ansible",
            note=f"the preview activity alone (started->completed) took median "
            f"{percentile(preview_activity, 50):.2f} s",
        ),
        Figure(
            "Ansible overhead",
            "execution activity, execute + verify in one run (scheduled -> completed)",
            "s",
            execution,
            baseline=plain_change,
            baseline_label="plain `ansible-playbook --diff` of the run and verify playbooks in one process "
            "(a playbook importing both), same inventory and variables",
            target="ratio <= 1.10",
            met=ratio <= 1.10,
            judged_on=f"ratio of medians {ratio:.2f}",
            size=f"{sizes.ansible_runs} restarts of checkout-api in the lab",
            note="inside the activity (the execute stage's start to the verify stage's end, as the "
            f"activity timed them) median {percentile(execution_inside, 50):.2f} s",
        ),
        Figure(
            "approval to completed",
            "approve Update call -> status completed, one-host restart",
            "s",
            approval_to_completed,
            baseline=plain_run,
            baseline_label="one plain `ansible-playbook --diff` run of the restart playbook",
            target="ratio <= 1.5",
            met=completed_ratio <= 1.5,
            judged_on=f"ratio of medians {completed_ratio:.2f}",
            size=f"{sizes.ansible_runs} restarts of checkout-api in the lab (with verify, no settle)",
            note="medians from the history's event times: "
            + ", ".join(f"{part} {percentile(v, 50):.3f} s" for part, v in breakdown.items())
            + "; the rest is the Update's own round trip and the status query's poll (20 ms)",
        ),
        *per_task_count,
    ]


# --- scale of waiting ----------------------------------------------------------------------------


async def wait_for_log(log: Path, proc: Any, text: str = "worker polling", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and text in log.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the bench worker did not start; see {log}")
        await asyncio.sleep(0.2)


async def bench_scale(ctx: BenchContext) -> list[Figure]:
    sizes = ctx.sizes
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    record = ctx.workdir / f"{queue}-executions.jsonl"
    proc = start_worker_process(
        ctx.settings,
        queue,
        ctx.workdir / f"{queue}.log",
        [sys.executable, "-m", "bench.worker", "--noop-playbooks", "--record", str(record)],
    )
    rss_peak = 0.0
    stop = asyncio.Event()

    async def sample_rss() -> None:
        nonlocal rss_peak
        while not stop.is_set():
            rss_peak = max(rss_peak, rss_mb(proc.pid))
            await asyncio.sleep(0.5)

    # Idle (connected, polling) before any proposal: the per-proposal cost is measured above it.
    await wait_for_log(ctx.workdir / f"{queue}.log", proc)
    rss_idle = rss_mb(proc.pid)
    sampler = asyncio.create_task(sample_rss())
    try:
        started = time.perf_counter()
        ids = await settle_many(ctx, queue, sizes.scale, "scale")
        settle_seconds = time.perf_counter() - started
        rss_waiting = rss_mb(proc.pid)

        async def started_at(pid: str) -> float:
            while True:
                if record.exists():
                    for line in record.read_text().splitlines():
                        row = json.loads(line)
                        if row["proposal_id"] == pid:
                            return float(row["at"])
                await asyncio.sleep(0.005)

        chosen = random.Random(8).sample(ids, min(sizes.scale_samples, len(ids)))
        from_return, from_call = await measure_decisions(ctx, chosen, started_at)
        rss_after = rss_mb(proc.pid)
    finally:
        stop.set()
        sampler.cancel()  # it may be between two samples: the process is about to go
        kill_process(proc)  # before any await: on an interrupt those are cancelled too
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    p99 = percentile(from_return, 99)
    per = max(0.0, rss_waiting - rss_idle) / sizes.scale
    cache = ctx.settings.max_cached_workflows
    size = (
        f"{sizes.scale} proposals awaiting approval on one worker process (cache {cache} workflows), {NOOP}"
    )
    return [
        Figure(
            "scale of waiting",
            "worker resident memory (peak while they wait)",
            "MB",
            [rss_peak],
            target="< 400 MB",
            met=rss_peak < 400,
            judged_on="peak",
            size=size,
            note=f"RSS {rss_idle:.0f} MB idle, {rss_waiting:.0f} MB once all {sizes.scale} were waiting "
            f"({per * 1024:.0f} KiB per waiting proposal), {rss_after:.0f} MB after the decisions; the "
            f"worker caches at most {cache} workflows (INTERLOCK_MAX_CACHED_WORKFLOWS; evicted ones "
            "are replayed on demand), so memory stops growing once the cache is full; "
            f"{sizes.scale} settled in {settle_seconds:.0f} s ({sizes.scale / settle_seconds:.1f}/s)",
        ),
        Figure(
            "scale of waiting",
            "decision latency on a random waiting one (Update return -> execution start)",
            "ms",
            [x * 1000 for x in from_return],
            target="p99 < 1 s",
            met=p99 < 1.0,
            judged_on="p99",
            size=f"{len(chosen)} random proposals of the {sizes.scale}",
        ),
        Figure(
            "scale of waiting",
            "decision latency on a random one (Update call -> execution start, the approver's view)",
            "ms",
            [x * 1000 for x in from_call],
            target="same target, applied to the approver's view",
            met=percentile(from_call, 99) < 1.0,
            judged_on="p99",
            size=f"same {len(chosen)}",
            note=CALL_NOTE
            + "; a proposal evicted from the worker's cache is replayed before its Update runs",
        ),
    ]


# --- audit ---------------------------------------------------------------------------------------


@asynccontextmanager
async def audit_database(ctx: BenchContext) -> AsyncIterator[tuple[str, str]]:
    """A database of its own for the audit benchmark (dropped afterwards), or a SQLite file."""
    if not ctx.database_url:
        yield f"sqlite:///{ctx.workdir / 'audit-bench.db'}", "SQLite (no --database-url given)"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"interlock_bench_{uuid.uuid4().hex[:8]}"
    url = make_url(ctx.database_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False), "PostgreSQL"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def bench_audit(ctx: BenchContext) -> list[Figure]:
    from interlock.audit.metrics import compute_metrics
    from interlock.audit.store import AuditStore

    sizes = ctx.sizes
    figures: list[Figure] = []
    async with audit_database(ctx) as (url, label):
        load = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                str(REPO / "scripts" / "make_audit_events.py"),
                "--url",
                url,
                "--events",
                str(sizes.audit_events),
            ],
            capture_output=True,
            text=True,
        )
        if load.returncode != 0:
            raise RuntimeError(f"make_audit_events.py failed: {load.stderr[-2000:]}")
        env = {**os.environ, "INTERLOCK_DATABASE_URL": url, "INTERLOCK_HOME": str(ctx.workdir / "audit-home")}
        cli: list[float] = []
        inproc: list[float] = []
        verify_rates: list[float] = []
        with AuditStore(url) as store:
            for _ in range(sizes.runs):
                t = time.perf_counter()
                compute_metrics(store)
                inproc.append(time.perf_counter() - t)
                t = time.perf_counter()
                done = subprocess.run(
                    [str(Path(sys.executable).parent / "interlock"), "metrics", "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                cli.append(time.perf_counter() - t)
                if done.returncode != 0:
                    raise RuntimeError(f"interlock metrics failed: {done.stderr[-2000:]}")
                report = store.verify()
                assert report.ok, report.problems[:3]
                verify_rates.append(report.rate_per_s)
        size = f"{sizes.audit_events:,} events (scripts/make_audit_events.py) in {label}"
        figures += [
            Figure(
                "audit",
                "`interlock metrics` query (compute_metrics, all time)",
                "s",
                inproc,
                target="< 1 s",
                met=percentile(inproc, 50) < 1.0,
                judged_on="median",
                size=size,
            ),
            Figure(
                "audit",
                "`interlock metrics --json` as a command (with Python start-up)",
                "s",
                cli,
                size=size,
                note="start-up and imports included; the target applies to the query above",
            ),
            Figure(
                "audit",
                "`interlock audit verify` rate",
                "events/s",
                verify_rates,
                target="> 100,000 events/s",
                met=percentile(verify_rates, 50) > 100_000,
                judged_on="median",
                size=size,
            ),
        ]
    figures += await bench_replay(ctx)
    return figures


async def aiter_of(items: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for item in items:
        yield item


async def bench_replay(ctx: BenchContext) -> list[Figure]:
    from interlock.audit.history import _replay_each, default_jobs, load_history, replay_many, replayer

    stored = sorted((REPO / "tests" / "histories").glob("*.json"))
    histories = [load_history(p.read_text(), p.stem) for p in stored] + ctx.histories
    want = max(ctx.sizes.replays, len(histories))
    batch = (histories * (want // len(histories) + 1))[:want]
    events = sum(len(h.events) for h in batch) / len(batch)
    size = (
        f"{len(batch)} replays of {len(histories)} distinct histories "
        f"(tests/histories + this run's), {events:.0f} events each on average"
    )
    jobs = default_jobs()

    async def bulk(n: int, sandboxed: bool) -> None:
        outcomes = await replay_many(batch, jobs=n, sandboxed=sandboxed)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:1]

    async def with_sdk_payload_passes() -> None:
        # The baseline of interlock.audit.replay_payloads: the SDK's own path (payload passes,
        # a converter built per activation, each activation on a workflow thread), in this
        # process only (worker processes of --jobs always take the fast path).
        import temporalio.bridge.worker as sdk

        from interlock.audit import replay_payloads

        engine = replayer(sandboxed=False)  # threaded; installs the skip: undone just below
        sdk.decode_activation = replay_payloads._SDK_DECODE
        sdk.encode_completion = replay_payloads._SDK_ENCODE
        replay_payloads._CommandAware.create = staticmethod(replay_payloads._SDK_CREATE)  # type: ignore[method-assign]
        try:
            # replay_many's loop over histories, as with --jobs 1.
            outcomes = await _replay_each(engine, batch)
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:1]
        finally:
            replay_payloads.skip_inert_payload_passes()

    async def one_sandboxed_replayer() -> None:
        results = await replayer(sandboxed=True).replay_workflows(
            aiter_of(batch), raise_on_replay_failure=True
        )
        assert not results.replay_failures, list(results.replay_failures.values())[:1]

    # (label, run, carries the target): the target applies to what `interlock audit replay --all`
    # does; the others show what the processes and the sandbox each change.
    runs: list[tuple[str, Callable[[], Awaitable[None]], bool]] = [
        (
            f"`interlock audit replay --all` (unsandboxed, --jobs {jobs}, process start-up included)",
            lambda: bulk(jobs, False),
            True,
        ),
        ("unsandboxed, one process (--jobs 1; diagnostic)", lambda: bulk(1, False), False),
        (
            "unsandboxed, one process, the SDK's own path: payload passes that are no-ops without a "
            "codec, a data converter built twice per activation, each activation on a workflow "
            "thread (diagnostic: the baseline of interlock/audit/replay_payloads.py)",
            with_sdk_payload_passes,
            False,
        ),
        (f"`--all --sandboxed --jobs {jobs}` (diagnostic)", lambda: bulk(jobs, True), False),
        (
            "sandboxed, one process, one Replayer, as the worker and tests/unit/test_replay.py "
            "run it (diagnostic: the rate before bulk replay)",
            one_sandboxed_replayer,
            False,
        ),
    ]
    figures = []
    for label, run, target in runs:
        rates: list[float] = []
        for _ in range(ctx.sizes.runs):
            started = time.perf_counter()
            await run()
            rates.append(len(batch) / (time.perf_counter() - started))
        figures.append(
            Figure(
                "audit",
                f"replay rate of stored histories, {label}",
                "histories/s",
                rates,
                target="> 100/s" if target else "",
                met=percentile(rates, 50) > 100 if target else None,
                judged_on="median",
                size=size,
            )
        )
    return figures


# --- durability drills at the size -------------------------------------------------------

KILL = "tests/system/drills/test_kill.py::test_kill_under_load_loses_nothing_and_runs_nothing_twice"
DRILLS = {  # pytest node id -> what the drill does
    f"{KILL}[server]": "dev server SIGKILLed and restarted",
    f"{KILL}[worker]": "worker SIGKILLed and restarted",
    "tests/system/drills/test_audit_outage.py::test_audit_database_outage_loses_and_duplicates_nothing": (
        "audit database cut off while events are written"
    ),
    "tests/system/drills/test_expiry_race.py": "approvals racing the approval timer",
}


async def bench_drills(ctx: BenchContext) -> list[Figure]:
    """tests/system/drills at the issue's size: each a pass or a failure, with its wall time.

    They are the same tests `.ci/run` runs at 12 proposals; here with `drill_proposals` waiting
    and 5 playbooks running. Each test starts its own dev server, lab and database.
    """
    import xml.etree.ElementTree as ET

    proposals = ctx.sizes.drill_proposals
    report = ctx.workdir / "drills.xml"
    env = {**os.environ, "INTERLOCK_DRILL_PROPOSALS": str(proposals), "INTERLOCK_DRILL_RUNNING": "5"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    # Quick mode checks the harness with the shortest drill: `.ci/run` runs all of them as tests.
    argv += [n for n in DRILLS if "expiry" in n] if ctx.quick else list(DRILLS)
    done = await asyncio.to_thread(subprocess.run, argv, cwd=REPO, env=env, capture_output=True, text=True)
    if not report.exists():
        raise RuntimeError(f"the drills did not run: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    figures = []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        node = f"{case.get('classname', '').replace('.', '/')}.py::{name}"
        label = DRILLS.get(node) or DRILLS.get(node.split("::")[0], name)
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        passed = failure is None and case.find("skipped") is None
        figures.append(
            Figure(
                "durability drill",
                label,
                "s",
                [float(case.get("time", "0"))],
                target="every proposal final, no change twice, no audit event lost or duplicated",
                met=passed,
                judged_on="passed" if passed else "FAILED",
                size=(
                    f"{proposals} proposals waiting, 5 playbooks running (real Ansible), tests/system/drills"
                    if "kill" in name
                    else "its own fixed size (not scaled by --drill-proposals), tests/system/drills"
                ),
                note="" if passed else (failure.get("message") or "")[:300],
            )
        )
    if not figures:
        raise RuntimeError(f"no drill results: {done.stdout[-2000:]}")
    return figures


BENCHMARKS: dict[str, Callable[[BenchContext], Awaitable[list[Figure]]]] = {
    "round_trips": bench_round_trips,
    "engine_overhead": bench_engine_overhead,
    "decision_latency": bench_decision_latency,
    "ansible": bench_ansible,
    "scale": bench_scale,
    "audit": bench_audit,
    "drills": bench_drills,
    "storm": bench_storm,
}

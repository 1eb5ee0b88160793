"""The alert storm: many recommenders propose the same few fixes at once, through the real intake.

`storm` proposals from 5 recommenders for `storm_incidents` incidents arrive within
`storm_seconds` (open loop: each is sent at its planned moment, answered or not), over HTTP with
bearer tokens to a real `interlock api` process, worked by a real worker process with the no-op
playbooks, whose notifications go to a webhook receiver run here. What must hold: one owner per
incident, every other proposal attached to it (none lost, none attached elsewhere), one
notification per owner and none per duplicate. What it measures: the time until every owner is
awaiting approval, each submission's time to its answer, the worker's memory, CPU per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from temporalio.client import Client

from bench.measure import Figure, cpu_seconds
from bench.stack import BIN, free_port, kill_process, make_settings, rss_mb, start_worker_process, worker_env
from interlock import search
from interlock.examples import example_proposal
from interlock.models import ProposalStatus
from interlock.proposals import get_state
from interlock.settings import Settings
from interlock.tokens import TokenStore, intake_db_path

if TYPE_CHECKING:
    from bench.benchmarks import BenchContext

log = logging.getLogger("bench.storm")
RECOMMENDERS = ["triage-bot", "deploy-bot", "capacity-bot", "sre-bot", "alert-bot"]
NOOP = "no-op Ansible activities (benchmark stand-in)"
# Above the storm's rate: the intake's default (60/minute per recommender) would answer most of a
# storm with 429, which measures the limiter, not the engine. Set per deployment.
STORM_RATE = "100000/minute"


class WebhookReceiver:
    """A real HTTP server on localhost that keeps every notification POSTed to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    note = json.loads(body)
                except ValueError:
                    note = {"unreadable": body[:200].decode(errors="replace")}
                with lock:
                    received.append({**note, "received": time.time()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Sent:
    doc: dict[str, Any]
    planned: float  # time.time() it was due
    status_code: int = 0
    answer: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # from the first send to the accepted answer, retries included
    retries: int = 0
    error: str = ""

    @property
    def proposal_id(self) -> str:
        return str(self.doc["proposal_id"])

    @property
    def incident(self) -> str:
        return str(self.doc["incident"])


@dataclass
class StormResult:
    """What the storm saw; `problems` lists every broken invariant (empty: all held)."""

    proposals: int
    incidents: int
    owners: dict[str, str]  # incident -> owner proposal id
    attached: int
    lost: list[str]
    misattached: list[str]
    notifications: dict[str, int]  # owner -> awaiting_approval notifications
    stray_notifications: list[str]  # notifications about a duplicate or an unknown proposal
    workflows_started: int
    all_awaiting_seconds: float
    response_seconds: list[float]
    retries: int
    send_seconds: float
    rss_idle: float
    rss_peak: float
    cpu: dict[str, float]
    problems: list[str]


def storm_settings(workdir: Path, lab_root: Path, address: str, webhook: str) -> Settings:
    home = workdir / "home-storm"
    settings = make_settings(home, lab_root, address)
    policy = yaml.safe_load((home / "policy.yaml").read_text())
    policy["notifier"] = {"kind": "webhook", "url": webhook, "ui_base_url": "http://localhost:8233"}
    (home / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return settings


@asynccontextmanager
async def intake_process(settings: Settings, queue: str, log_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A real `interlock api` process on a free port: (its URL, its pid)."""
    port = free_port()
    env = {**worker_env(settings, queue), "INTERLOCK_API_PORT": str(port), "INTERLOCK_API_RATE": STORM_RATE}
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "interlock"), "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # importing the MCP SDK takes >10 s on a loaded machine
        async with httpx.AsyncClient() as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"`interlock api` exited {proc.returncode}; see {log_path}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"`interlock api` did not answer in 90 s; see {log_path}")
                await asyncio.sleep(0.2)
        yield url, proc.pid
    finally:
        kill_process(proc)


async def wait_polling(log_path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (log_path.exists() and "worker polling" in log_path.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the storm's worker did not start; see {log_path}")
        await asyncio.sleep(0.2)


def storm_docs(n: int, incidents: int, tag: str) -> list[dict[str, Any]]:
    """Proposal k is recommender k % 5's, for incident k % incidents: each incident hears from
    every recommender, interleaved as alerts would arrive."""
    return [
        example_proposal(
            "restart_service",
            proposal_id=f"storm-{tag}-{k:05d}",
            recommender=RECOMMENDERS[k % len(RECOMMENDERS)],
            incident=f"INC-storm-{tag}-{k % incidents:03d}",
        )
        for k in range(n)
    ]


async def send_one(http: httpx.AsyncClient, sent: Sent, token: str) -> None:
    await asyncio.sleep(max(0.0, sent.planned - time.time()))
    started = time.perf_counter()
    for attempt in range(20):
        try:
            response = await http.post(
                "/v1/proposals", json=sent.doc, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TransportError as exc:
            sent.error = f"{type(exc).__name__}: {exc}"
            sent.retries = attempt + 1
            await asyncio.sleep(1.0)
            continue
        if response.status_code in (429, 503):  # the intake asks for a retry: a recommender would
            sent.retries = attempt + 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        sent.status_code = response.status_code
        sent.seconds = time.perf_counter() - started
        with contextlib.suppress(ValueError):
            sent.answer = response.json()
        sent.error = "" if response.status_code in (201, 202) else response.text[:300]
        return
    sent.error = sent.error or "no answer after 20 attempts"


async def watch_owners(client: Client, queue: str, done: asyncio.Event, seen: dict[str, float]) -> None:
    """Record when each proposal's status attribute first reads awaiting_approval: one
    visibility list a poll, so watching loads neither the worker nor the server it measures
    (a describe per owner per poll cost the dev server more than the storm's own reads)."""
    query = f"WorkflowType = 'RemediationWorkflow' AND TaskQueue = '{queue}'"
    while not done.is_set():
        with contextlib.suppress(Exception):
            async for wf in client.list_workflows(query):
                if wf.id in seen:
                    continue
                status = wf.typed_search_attributes.get(search.SA_STATUS)
                if status == ProposalStatus.AWAITING_APPROVAL.value:
                    seen[wf.id] = time.time()
                elif status and ProposalStatus(status).is_final:
                    seen[wf.id] = float("nan")  # ended: reported as a problem below
        await asyncio.sleep(0.5)


async def eventually(check: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return False


async def run_storm(
    client: Client,
    workdir: Path,
    lab_root: Path,
    address: str,
    *,
    proposals: int,
    incidents: int,
    seconds: float,
    server_pid: int | None,
    settle_timeout: float = 900,
) -> StormResult:
    tag = uuid.uuid4().hex[:6]
    queue = f"storm-{tag}"
    webhook = WebhookReceiver()
    settings = storm_settings(workdir, lab_root, address, webhook.url)
    store = TokenStore(intake_db_path(settings.home_dir))
    tokens = {name: store.create(name) for name in RECOMMENDERS}
    store.engine.dispose()
    docs = storm_docs(proposals, incidents, tag)
    worker_log = workdir / f"{queue}-worker.log"
    with webhook.running():
        worker = start_worker_process(
            settings, queue, worker_log, [sys.executable, "-m", "bench.worker", "--noop-playbooks"]
        )
        try:
            await wait_polling(worker_log, worker)
            async with intake_process(settings, queue, workdir / f"{queue}-api.log") as (url, api_pid):
                return await _storm(
                    client, docs, tokens, url, worker.pid, api_pid, server_pid, webhook,
                    incidents=incidents, seconds=seconds, queue=queue, settle_timeout=settle_timeout,
                )  # fmt: skip
        finally:
            kill_process(worker)


async def _storm(
    client: Client,
    docs: list[dict[str, Any]],
    tokens: dict[str, str],
    url: str,
    worker_pid: int,
    api_pid: int,
    server_pid: int | None,
    webhook: WebhookReceiver,
    *,
    incidents: int,
    seconds: float,
    queue: str,
    settle_timeout: float,
) -> StormResult:
    pids = {"worker": worker_pid, "intake": api_pid, **({"dev server": server_pid} if server_pid else {})}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = resource.getrusage(resource.RUSAGE_SELF)
    driver_before = own.ru_utime + own.ru_stime
    rss_idle = rss_mb(worker_pid)
    rss_peak = rss_idle
    stop = asyncio.Event()

    async def sample_rss() -> None:
        nonlocal rss_peak
        while not stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                rss_peak = max(rss_peak, rss_mb(worker_pid))
            await asyncio.sleep(0.25)

    t0 = time.time() + 0.5
    sends = [Sent(doc, t0 + k * seconds / len(docs)) for k, doc in enumerate(docs)]
    awaiting: dict[str, float] = {}
    sampler = asyncio.create_task(sample_rss())
    watcher = asyncio.create_task(watch_owners(client, queue, stop, awaiting))
    problems: list[str] = []
    try:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            await asyncio.gather(*(send_one(http, s, tokens[s.doc["recommender"]]) for s in sends))
        send_seconds = max(s.planned + s.seconds for s in sends) - t0
        owners_expected = {s.proposal_id for s in sends if s.status_code == 201}
        if not await eventually(lambda: _has_all(awaiting, owners_expected), settle_timeout):
            problems.append(f"{len(owners_expected) - len(awaiting)} owner(s) never awaiting_approval")
    finally:
        stop.set()
        await asyncio.gather(sampler, watcher, return_exceptions=True)
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu["bench driver (HTTP client, watcher)"] = own.ru_utime + own.ru_stime - driver_before
    ended = [pid for pid, at in awaiting.items() if at != at]  # NaN: the owner ended
    if ended:
        problems.append(f"{len(ended)} owner(s) ended instead of awaiting approval: {ended[:3]}")
    all_awaiting = max((at for at in awaiting.values() if at == at), default=t0) - t0

    # --- the invariants ---------------------------------------------------------------------
    by_id = {s.proposal_id: s for s in sends}
    unanswered = [s.proposal_id for s in sends if s.status_code not in (201, 202)]
    if unanswered:
        first = by_id[unanswered[0]]
        problems.append(f"{len(unanswered)} not accepted, e.g. {first.status_code} {first.error}")
    owners: dict[str, str] = {}
    for s in sends:
        if s.status_code == 201:
            if s.incident in owners:
                problems.append(
                    f"incident {s.incident} has two owners: {owners[s.incident]}, {s.proposal_id}"
                )
            owners[s.incident] = s.proposal_id
    if len(owners) != incidents:
        problems.append(f"{len(owners)} owners for {incidents} incidents")
    misattached = [
        s.proposal_id
        for s in sends
        if s.status_code == 202 and s.answer.get("duplicate_of") != owners.get(s.incident)
    ]
    # Each owner must hold every duplicate answered with its id, evidence checked.
    recorded: dict[str, set[str]] = {}
    expected = {
        owner: {
            s.proposal_id for s in sends if s.status_code == 202 and s.answer.get("duplicate_of") == owner
        }
        for owner in owners.values()
    }

    async def duplicates_checked() -> bool:
        for owner, want in expected.items():
            if recorded.get(owner) == want:
                continue
            state = await get_state(client, owner)
            got = {d.proposal_id for d in state.duplicates if d.ok is not None}
            if state.duplicate_count > len(state.duplicates):  # more than the state keeps in full
                got |= want if state.duplicate_count == len(want) else set()
            if got != want:
                return False
            recorded[owner] = got
        return True

    if not await eventually(duplicates_checked, settle_timeout):
        problems.append("duplicates not all recorded (checked) by their owners in time")
    lost = sorted(
        {s.proposal_id for s in sends if s.status_code == 202} - set().union(*recorded.values(), set())
    )
    lost += unanswered
    started = await client.count_workflows(f"WorkflowType = 'RemediationWorkflow' AND TaskQueue = '{queue}'")
    if started.count != len(owners):
        problems.append(f"{started.count} proposal workflows started for {len(owners)} owners")

    # --- notifications: one per owner (awaiting approval), none per duplicate ------------------
    owner_ids = set(owners.values())
    await eventually(lambda: _notified_all(webhook, owner_ids), 120)
    await asyncio.sleep(2.0)  # anything extra (a notification per duplicate) would arrive by now
    notifications = {pid: 0 for pid in owner_ids}
    stray: list[str] = []
    for note in list(webhook.received):
        pid = str(note.get("proposal_id"))
        if pid in notifications and note.get("kind") == "awaiting_approval":
            notifications[pid] += 1
        else:
            stray.append(f"{note.get('kind')}:{pid}")
    if any(n != 1 for n in notifications.values()):
        problems.append(f"owners notified other than once: {sorted(set(notifications.values()))}")
    if stray:
        problems.append(f"{len(stray)} notification(s) not one-per-owner, e.g. {stray[:3]}")
    if misattached:
        problems.append(f"{len(misattached)} misattached, e.g. {misattached[:3]}")
    if lost:
        problems.append(f"{len(lost)} lost, e.g. {lost[:3]}")
    return StormResult(
        proposals=len(sends),
        incidents=incidents,
        owners=owners,
        attached=sum(len(v) for v in recorded.values()),
        lost=lost,
        misattached=misattached,
        notifications=notifications,
        stray_notifications=stray,
        workflows_started=started.count,
        all_awaiting_seconds=all_awaiting,
        response_seconds=[s.seconds for s in sends if s.status_code in (201, 202)],
        retries=sum(s.retries for s in sends),
        send_seconds=send_seconds,
        rss_idle=rss_idle,
        rss_peak=rss_peak,
        cpu=cpu,
        problems=problems,
    )


async def _has_all(seen: dict[str, float], wanted: set[str]) -> bool:
    return wanted <= seen.keys()


async def _notified_all(webhook: WebhookReceiver, owners: set[str]) -> bool:
    return owners <= {str(n.get("proposal_id")) for n in list(webhook.received)}


def figures(r: StormResult, seconds: float) -> list[Figure]:
    size = (
        f"{r.proposals} proposals from {len(RECOMMENDERS)} recommenders for {r.incidents} incidents "
        f"within {seconds:g} s, HTTP intake with tokens (`interlock api`), one worker process, {NOOP}"
    )
    duplicates = r.proposals - len(r.owners)
    held = not r.lost and not r.misattached and r.workflows_started == len(r.owners) == r.incidents
    notified_once = all(n == 1 for n in r.notifications.values()) and not r.stray_notifications
    cpu = ", ".join(f"{name} {value:.1f} s" for name, value in r.cpu.items())
    problems = "; ".join(r.problems)
    return [
        Figure(
            "alert storm",
            "every duplicate attached to its owner (lost / misattached)",
            "count",
            [float(len(r.lost) + len(r.misattached))],
            text=f"{r.attached} of {duplicates} attached; {len(r.lost)} lost, {len(r.misattached)} "
            f"misattached; {r.workflows_started} workflows for {r.incidents} incidents",
            target="no proposal lost, 0 misattached, one workflow per incident",
            met=held,
            judged_on="invariant",
            size=size,
            note=problems,
        ),
        Figure(
            "alert storm",
            "notifications (webhook): one per owner, not per duplicate",
            "count",
            [float(sum(r.notifications.values()) + len(r.stray_notifications))],
            text=f"{sum(r.notifications.values())} for {len(r.owners)} owners; "
            f"{len(r.stray_notifications)} other",
            target="one per owner",
            met=notified_once,
            judged_on="invariant",
            size="same storm, a real HTTP receiver on localhost",
        ),
        Figure(
            "alert storm",
            "time until every owner is awaiting_approval (from the first submission)",
            "s",
            [r.all_awaiting_seconds],
            size="same storm",
            note=f"every submission answered {r.send_seconds:.1f} s after the first was sent "
            f"({r.retries} retries asked for by the intake)",
        ),
        Figure(
            "alert storm",
            "time to first response (POST -> 201/202 answer)",
            "ms",
            [x * 1000 for x in r.response_seconds],
            size="same storm",
        ),
        Figure(
            "alert storm",
            "worker resident memory (peak during the storm)",
            "MB",
            [r.rss_peak],
            size="same storm",
            note=f"{r.rss_idle:.0f} MB idle before it",
        ),
        Figure(
            "alert storm",
            "CPU seconds per process during the storm",
            "s",
            [sum(r.cpu.values())],
            text=cpu,
            size="same storm",
        ),
    ]


async def bench_storm(ctx: BenchContext) -> list[Figure]:
    sizes = ctx.sizes
    rpcs = await duplicate_rpcs(ctx.client, ctx.settings)
    server = ctx.server.proc.pid if ctx.server.proc is not None else None
    result = await run_storm(
        ctx.client,
        ctx.workdir,
        ctx.lab.root,
        ctx.server.address,
        proposals=sizes.storm,
        incidents=sizes.storm_incidents,
        seconds=sizes.storm_seconds,
        server_pid=server,
    )
    if result.problems:
        log.error("storm invariants broken: %s", "; ".join(result.problems))
    later = [len(calls) for calls in rpcs[2:]]
    return [
        Figure(
            "alert storm",
            "Temporal RPCs per duplicate at the intake (first duplicate of a claim / each later one)",
            "count",
            [float(n) for n in later],
            text=f"{len(rpcs[1])} / {max(later)}",
            size=f"one owner and {len(rpcs) - 1} duplicates through Intake.submit (no HTTP)",
            note=f"first: {rpc_summary(rpcs[1])}; later: {rpc_summary(rpcs[-1])}; the owner: "
            f"{rpc_summary(rpcs[0])}; before the per-run cache and the status read while attaching: "
            "7 for every duplicate (describe 4, history 1, start 1, signal 1)",
        ),
        *figures(result, sizes.storm_seconds),
    ]


# --- Temporal round trips of one duplicate at the intake ------------------------------------------


@contextmanager
def counted_rpcs(client: Client) -> Iterator[list[str]]:
    """Every RPC the client's connection makes (each client of the connection, the claims
    namespace's included), by name, while the block runs."""
    service = client.service_client
    calls: list[str] = []
    original = service._rpc_call

    async def counting(rpc: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(rpc)
        return await original(rpc, *args, **kwargs)

    service._rpc_call = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        service._rpc_call = original  # type: ignore[method-assign]


async def duplicate_rpcs(client: Client, settings: Settings, duplicates: int = 4) -> list[list[str]]:
    """The RPCs of the intake's submission path (interlock.api.intake.Intake.submit, without the
    HTTP layer) for one owner, then each of `duplicates` for its problem. No worker serves the
    queue: attaching needs none (the owner waits in `submitted`, terminated afterwards)."""
    from interlock.api.intake import Intake
    from interlock.api.settings import ApiSettings

    queue = f"rpcs-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"task_queue": queue})

    async def same_client() -> Client:
        return client

    intake = Intake(settings, ApiSettings(rate=STORM_RATE), client_factory=same_client)
    incident = f"INC-rpcs-{queue}"
    docs = [
        example_proposal(
            "restart_service",
            proposal_id=f"{queue}-{k}",
            recommender=RECOMMENDERS[k % len(RECOMMENDERS)],
            incident=incident,
        )
        for k in range(duplicates + 1)
    ]
    counts: list[list[str]] = []
    try:
        for doc in docs:
            with counted_rpcs(client) as calls:
                answer = await intake.submit(str(doc["recommender"]), json.dumps(doc).encode(), None)
            if answer.status_code not in (201, 202):
                raise RuntimeError(f"the intake answered {answer.status_code}: {answer.body!r}")
            counts.append(calls)
    finally:
        intake.engine.dispose()
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(str(docs[0]["proposal_id"])).terminate(reason="bench: counted")
    return counts


def rpc_summary(calls: list[str]) -> str:
    names: dict[str, int] = {}
    for name in calls:
        names[name] = names.get(name, 0) + 1
    return ", ".join(f"{name} {n}" for name, n in sorted(names.items()))

"""Playbook activity: runs an action's playbook with ansible-runner, heartbeating while it runs.

The only door from a proposal to a system. Extra vars are rebuilt here from validated names
(never an `ansible_*` variable, never a free-form string), timeouts are always set, and every
task's result is kept for the approver and the audit trail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pexpect.pty_spawn
import yaml
from ansible_runner.interface import init_runner
from ansible_runner.runner import Runner
from opentelemetry import trace as otel_trace
from temporalio import activity
from temporalio.exceptions import ApplicationError

from interlock import facts as host_facts
from interlock.activities.handover import HANDOVER_FILE, StageSplit, write_change_playbook
from interlock.contracts import Activity
from interlock.models import (
    CHECK_OF,
    FACTS_REFUSED,
    SAFE_NAME,
    ChangeResult,
    HostFacts,
    PlaybookResult,
    PlaybookRun,
    RolloutPlan,
    Stage,
    TaskResult,
)
from interlock.policy import LAB_VARS, ActionSpec, Policy, load_policy
from interlock.rollout import make_batches, previewed_hosts
from interlock.settings import Settings
from interlock.tracing import record_task_spans, tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


def _no_delay_after_close() -> None:
    """ansible-runner closes each playbook's pty only once the process has exited, and ptyprocess
    then sleeps 0.1 s "to give the kernel time" before it checks the process is gone: 0.1 s of
    latency on every run (5% of a 2 s playbook). A process still alive is terminated as before."""
    original = pexpect.pty_spawn.spawn._spawnpty
    if getattr(original, "_interlock", False):
        return

    def spawnpty(self: Any, args: Any, **kwargs: Any) -> Any:
        process = original(self, args, **kwargs)
        process.delayafterclose = 0.0
        return process

    spawnpty._interlock = True  # type: ignore[attr-defined]
    pexpect.pty_spawn.spawn._spawnpty = spawnpty


_no_delay_after_close()


def _process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return []
    for name in entries:
        try:
            ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _kill_playbook(pid: int) -> None:
    """Stop a playbook run with everything it started. ansible-runner kills the process group of
    ansible-playbook only, but ansible-core runs each task in a worker of its own session
    (`setsid`): the task, and the ssh or module it runs, would go on orphaned after the run is
    reported stopped (and while a rollback runs). Freeze the run (no new worker), then kill the
    process group of every process in its tree. Never this worker's own group."""
    own = os.getpgid(0)
    try:
        os.killpg(os.getpgid(pid), signal.SIGSTOP)
    except (OSError, ProcessLookupError):
        pass
    groups = set()
    for member in _process_tree(pid):
        try:
            groups.add(os.getpgid(member))
        except (OSError, ProcessLookupError):
            continue
    for group in groups - {own}:
        try:
            os.killpg(group, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _kill_playbooks_whole() -> None:
    original = Runner.handle_termination
    if getattr(original, "_interlock", False):
        return

    def handle_termination(cls: Any, pid: int, pidfile: Any = None) -> None:
        _kill_playbook(pid)
        original(pid, pidfile)  # its own clean-up (the pid file)

    handle_termination._interlock = True  # type: ignore[attr-defined]
    Runner.handle_termination = classmethod(handle_termination)


_kill_playbooks_whole()

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
TASK_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
# Variables Interlock itself sets (`lab_root` and `service_manager` only for an action with
# `lab_vars`; facts arrive inside `interlock_facts`): a proposal can never set them.
INTERLOCK_VARS = frozenset({"service", *LAB_VARS})
# The stages that receive the run's facts: what verify and rollback need to know per host.
FACT_STAGES = (Stage.VERIFY, Stage.ROLLBACK, Stage.VERIFY_ROLLBACK)
RESERVED_PREFIXES = ("ansible_", "interlock_")
# Keys of a playbook that define variables (extra vars would override every one of them).
_DEFINING_KEYS = {"vars", "register", "set_fact", "ansible.builtin.set_fact", "loop_var"}


def playbook_variables(project_dir: Path) -> frozenset[str]:
    """Every variable the playbook tree defines (play and task `vars`, `register`, `set_fact`,
    `loop_var`): names a proposal's parameters must never reach, whatever the policy declares."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _DEFINING_KEYS:
                    if isinstance(value, dict):
                        found.update(str(k) for k in value)
                    elif isinstance(value, str):
                        found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted([*project_dir.rglob("*.yml"), *project_dir.rglob("*.yaml")]):
        try:
            walk(yaml.safe_load(path.read_text()))
        except yaml.YAMLError:
            continue  # Ansible refuses it too; the run reports the playbook's own error
    return frozenset(found)


def reserved(name: str, playbook_vars: frozenset[str]) -> bool:
    lowered = name.lower()
    return lowered.startswith(RESERVED_PREFIXES) or name in INTERLOCK_VARS or name in playbook_vars


def declared_parameters(
    parameters: dict[str, str], action_name: str, action: ActionSpec, playbook_vars: frozenset[str]
) -> dict[str, str]:
    """The parameters exactly as the action declares them, checked here at the door to Ansible:
    whoever started the workflow, nothing undeclared, off the allow-list or reserved gets through."""
    problems: list[str] = []
    for name, value in sorted(parameters.items()):
        spec = action.parameters.get(name)
        if reserved(name, playbook_vars) or name in action.facts:
            problems.append(
                f"{name!r} is reserved (Interlock, the playbooks or the action's facts define it)"
            )
        elif spec is None:
            problems.append(f"{name!r} is not a parameter of {action_name}")
        elif value not in spec.allowed:
            problems.append(f"{name}={value!r} is not allowed (allowed: {', '.join(spec.allowed)})")
    missing = sorted(set(action.parameters) - set(parameters))
    problems += [f"{name!r} is required by {action_name}" for name in missing]
    if problems:
        raise ApplicationError(
            "parameters refused: " + "; ".join(problems), type="ParametersRefused", non_retryable=True
        )
    return dict(parameters)


def run_hosts(run: PlaybookRun, policy: Policy, proposal_hosts: list[str] | None = None) -> list[str] | None:
    """The hosts a run is limited to, checked at the door to Ansible: names from the service
    catalog only (never a pattern), or None when the catalog lists no hosts for the service."""
    fleet = policy.service_hosts(run.service, run.environment)
    hosts = run.hosts
    if hosts is None:
        return fleet or None
    problems = [h for h in hosts if not SAFE_NAME.match(h) or h.lower().startswith("ansible_")]
    if run.stage is Stage.PREVIEW:
        # What a preview runs on is what gets approved: the catalog's hosts, nothing else.
        problems += [h for h in hosts if h not in fleet]
    if problems or not hosts:
        named = ", ".join(repr(h) for h in problems) or "none"
        raise ApplicationError(
            f"hosts refused: {named} (hosts of {run.service} in {run.environment or '?'}: "
            f"{', '.join(fleet) or 'none'})",
            type="ParametersRefused",
            non_retryable=True,
        )
    return list(hosts)


def handed_facts(run: PlaybookRun, action: ActionSpec) -> HostFacts:
    """The facts a verify or rollback run receives as `interlock_facts`, checked here at the door
    to Ansible: hosts of this run only, declared facts only, each of its declared type."""
    problems = host_facts.refused_handover(run.host_facts, action.facts, run.hosts)
    if problems:
        raise ApplicationError(
            "facts refused: " + "; ".join(problems), type="ParametersRefused", non_retryable=True
        )
    return {host: dict(values) for host, values in run.host_facts.items()}


def run_facts(
    events: list[Any], tasks: list[TaskResult], stage: Stage, action: ActionSpec, successful: bool
) -> tuple[HostFacts, str | None]:
    """Each host's declared facts from its own set_stats result, and why they are refused (None
    when they are not). A preview or execution that ran must report every declared fact of
    every host it ran on, typed; other stages' facts are kept when declared, never required."""
    hosts = sorted({t.host for t in tasks if t.host})
    strict = successful and stage in (Stage.PREVIEW, Stage.EXECUTE)
    found, problems = host_facts.check_facts(
        host_facts.reported(events), action.facts, hosts, require_all=strict
    )
    if problems and strict:
        return found, "declared facts refused: " + "; ".join(problems)
    return found, None


def safe_vars(values: dict[str, str], what: str) -> dict[str, str]:
    """Refuse anything that could steer Ansible itself, even if the workflow was fed it."""
    for key, value in values.items():
        if key.lower().startswith("ansible_") or not SAFE_NAME.match(key):
            raise ApplicationError(f"{what}: variable name {key!r} refused", non_retryable=True)
        if not SAFE_NAME.match(str(value)):
            raise ApplicationError(f"{what}: value of {key!r} refused", non_retryable=True)
    return dict(values)


@dataclass
class Job:
    """One run as checked at the door to Ansible (`PlaybookRunner._prepare`)."""

    run: PlaybookRun
    policy: Policy
    action: ActionSpec
    hosts: list[str] | None
    digest: str
    extravars: dict[str, Any]
    ident: str


def _wall(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


class PlaybookRunner:
    def __init__(
        self,
        settings: Settings,
        tracer_: Tracer | None = None,
        execution_runs: Callable[[str], set[str]] | None = None,
    ):
        self.settings = settings
        # The runs that recorded starting a proposal's change (the audit store): a change runs
        # under one run only, so a reset can never execute it again under an old approval.
        self.execution_runs = execution_runs
        self.tracer = tracer_ or tracer(settings)
        # One playbook per core at most: Ansible is CPU-bound on the worker.
        self._slots = asyncio.Semaphore(settings.max_concurrent_playbooks)
        self._playbook_vars: tuple[str, frozenset[str]] | None = None

    def playbook_variables(self, digest: str) -> frozenset[str]:
        # Keyed by the tree's digest (part of every plan), so the cache never goes stale.
        if self._playbook_vars is None or self._playbook_vars[0] != digest:
            names = playbook_variables(self.settings.playbooks_dir / "project")
            self._playbook_vars = (digest, names)
        return self._playbook_vars[1]

    def extra_vars(self, run: PlaybookRun, action: ActionSpec, digest: str) -> dict[str, Any]:
        params = safe_vars(
            declared_parameters(run.parameters, run.action, action, self.playbook_variables(digest)),
            "parameters",
        )
        rollback = run.stage in (Stage.ROLLBACK, Stage.VERIFY_ROLLBACK)
        slug = re.sub(r"[^a-z0-9._-]", "-", run.proposal_id.lower())[:48]
        unique = hashlib.sha256(run.proposal_id.encode()).hexdigest()[:8]
        lab = (
            {"lab_root": str(self.settings.lab_dir), "service_manager": self.settings.service_manager}
            if action.lab_vars
            else {}
        )
        return {
            **params,
            **lab,
            **({"interlock_facts": handed_facts(run, action)} if run.stage in FACT_STAGES else {}),
            "service": safe_vars({"service": run.service}, "target")["service"],
            # One idempotency key per proposal and direction: a retried execution after a
            # worker crash must not restart a service twice. Playbooks add the inventory host
            # to it (`interlock_change_id ~ '.' ~ inventory_hostname`): one change per host.
            "interlock_change_id": f"{slug}-{unique}.{'rollback' if rollback else 'run'}",
            # Verify playbooks check the forward change, or after a rollback the state before it.
            "interlock_direction": "rollback" if rollback else "forward",
        }

    @activity.defn(name=Activity.RUN_PLAYBOOK)
    async def run_playbook(self, run: PlaybookRun) -> PlaybookResult:
        job = await self._prepare(run)
        playbook = job.action.playbooks.for_stage(run.stage)
        started = datetime.now(UTC)
        # The stage's span, a child of the activity's; each task is a child of it.
        with self.tracer.start_as_current_span(
            f"stage: {run.stage.value}",
            attributes={
                "interlock.proposal_id": run.proposal_id,
                "interlock.stage": run.stage.value,
                "ansible.playbook": playbook,
            },
        ) as span:
            runner, events = await self._ansible(
                job, playbook, int(self._stage_seconds(job.action, run.stage))
            )
            record_task_spans(self.tracer, events)
            status = str(runner.status)
            rc = int(runner.rc if runner.rc is not None else -1)
            span.set_attribute("ansible.status", status)
            span.set_attribute("ansible.rc", rc)
        return self._result(job, playbook, events, status, rc, started, datetime.now(UTC))

    @activity.defn(name=Activity.RUN_CHANGE)
    async def run_change(self, run: PlaybookRun) -> ChangeResult:
        """A change and its check in one ansible-playbook process: the action's run (or rollback)
        playbook, Interlock's hand-over play, then its verify playbook, each stage's events and
        result kept apart (activities/handover.py). The hand-over is the same door as between
        two runs: the change's facts are checked here before the verify play may read them."""
        if run.stage not in CHECK_OF:
            raise ApplicationError(f"{run.stage.value} has no check to run with it", non_retryable=True)
        job = await self._prepare(run)
        then = CHECK_OF[run.stage]
        first = job.action.playbooks.for_stage(run.stage)
        second = job.action.playbooks.for_stage(then)
        seconds = [self._stage_seconds(job.action, s) for s in (run.stage, then)]
        run_dir = self.settings.artifacts_dir / run.proposal_id / job.ident
        split = StageSplit(
            stage=run.stage,
            action=job.action,
            handed=job.extravars.get("interlock_facts"),
            handover=run_dir / HANDOVER_FILE,
            nonce=uuid.uuid4().hex,
            deadlines=seconds,
        )
        project = self.settings.playbooks_dir / "project"
        wrapper = run_dir / "interlock_change.yml"
        await asyncio.to_thread(write_change_playbook, wrapper, project / first, project / second, split)
        job.extravars["interlock_handover"] = str(split.handover)
        started = datetime.now(UTC)
        # The run's own limit is a backstop under the workflow's margin: each stage has its own
        # deadline (StageSplit), the hand-over its lookup's wait. Each stage gets its own span
        # below, timed from its events, as two runs would.
        runner, _ = await self._ansible(job, str(wrapper), int(sum(seconds)) + 45, split)
        finished = datetime.now(UTC)
        status = str(runner.status)
        rc = int(runner.rc if runner.rc is not None else -1)
        outcome = split.outcome(status, rc)
        handed = _wall(split.handed_wall) or finished
        change = self._result(
            job, first, split.change_events(), outcome.first_status, outcome.first_rc, started, handed
        )
        self._stage_span(run, first, split.change_events(), change)
        check = None
        if change.ok and outcome.second_status is not None:
            checking = dataclasses.replace(job, run=run.model_copy(update={"stage": then}))
            begun = _wall(split.checked_wall) or handed
            check = self._result(
                checking, second, split.parts[2], outcome.second_status, outcome.second_rc, begun, finished
            )
            self._stage_span(checking.run, second, split.parts[2], check)
        return ChangeResult(change=change, check=check)

    def _stage_seconds(self, action: ActionSpec, stage: Stage) -> float:
        limit = action.timeouts.for_stage(stage)
        return limit.total_seconds() if limit else float(self.settings.playbook_timeout_seconds)

    def _stage_span(
        self, run: PlaybookRun, playbook: str, events: list[dict[str, Any]], result: PlaybookResult
    ) -> None:
        """A stage of a shared run, traced as if it had run on its own: a child of the activity's
        span from the stage's start to its end, with its tasks as children."""
        span = self.tracer.start_span(
            f"stage: {run.stage.value}",
            start_time=int(result.started_at.timestamp() * 1e9),
            attributes={
                "interlock.proposal_id": run.proposal_id,
                "interlock.stage": run.stage.value,
                "ansible.playbook": playbook,
                "ansible.status": result.status,
                "ansible.rc": result.rc,
                "interlock.shared_run": True,
            },
        )
        with otel_trace.use_span(span, end_on_exit=False):
            record_task_spans(self.tracer, events)
        span.end(end_time=int(result.finished_at.timestamp() * 1e9))

    async def _prepare(self, run: PlaybookRun) -> Job:
        """What every run needs, checked at the door to Ansible: the action, the hosts (names from
        the catalog), the extra vars (declared parameters, handed facts), the approved plan."""
        policy = load_policy(self.settings.effective_policy_file)
        action = policy.actions.get(run.action)
        if action is None:
            raise ApplicationError(f"unknown action {run.action!r}", non_retryable=True)
        hosts = run_hosts(run, policy)
        info = activity.info()
        await asyncio.to_thread(
            remove_old_artifacts, self.settings.artifacts_dir, self.settings.artifacts_keep_seconds
        )
        # Reading the tree blocks: off the worker's event loop, which runs workflows too.
        digest = await asyncio.to_thread(playbooks_digest, self.settings.playbooks_dir)
        extravars = await asyncio.to_thread(self.extra_vars, run, action, digest)
        if run.stage is Stage.EXECUTE and self.execution_runs is not None:
            earlier = await asyncio.to_thread(self.execution_runs, run.proposal_id)
            earlier.discard(info.workflow_run_id)
            if earlier:
                raise ApplicationError(
                    f"the change was already started by run {sorted(earlier)[0]} of this proposal "
                    "(a reset?); it runs once only",
                    type="AlreadyExecuted",
                    non_retryable=True,
                )
        if run.expected_digest and digest != run.expected_digest:
            # The plan on disk is not the plan that was approved: run nothing.
            raise ApplicationError(
                "plan changed: the playbooks differ from the approved plan",
                type="PlanChanged",
                non_retryable=True,
            )
        return Job(
            run=run,
            policy=policy,
            action=action,
            hosts=hosts,
            digest=digest,
            extravars=extravars,
            ident=f"{run.stage.value}-{info.attempt}-{info.activity_id}",
        )

    async def _ansible(
        self, job: Job, playbook: str, job_timeout: int, split: StageSplit | None = None
    ) -> tuple[Any, list[dict[str, Any]]]:
        """One ansible-runner run in a worker thread, heartbeating; its events as they came."""
        run = job.run
        envvars = ansible_env(self.settings)
        events: list[dict[str, Any]] = []
        cancelled = threading.Event()

        def on_event(event: dict[str, Any]) -> bool:
            events.append(event)
            if split is not None:
                split.see(event)
            return True  # still written to the run's artifacts

        def stop() -> bool:
            return cancelled.is_set() or (split is not None and split.overdue())

        def execute() -> Any:
            runner = init_runner(
                private_data_dir=str(self.settings.playbooks_dir),
                artifact_dir=str(self.settings.artifacts_dir / run.proposal_id),
                ident=job.ident,
                playbook=playbook,
                extravars=job.extravars,
                # Names from the catalog, joined by ansible's own separator: never a pattern.
                limit=",".join(job.hosts) if job.hosts else None,
                cmdline="--check --diff" if run.stage is Stage.PREVIEW else "--diff",
                quiet=True,
                # ansible-runner has no limits by default: always set both.
                settings={
                    "job_timeout": job_timeout,
                    "idle_timeout": self.settings.playbook_idle_timeout_seconds,
                    "suppress_ansible_output": True,
                    # How often, at most, the run loop asks `stop` (cancellation, stage deadlines).
                    "pexpect_timeout": 1,
                },
                envvars=envvars,
                cancel_callback=stop,
                event_handler=on_event,
                suppress_env_files=True,
            )
            # ansible-runner seeds the environment with the worker's whole one (and writes it
            # to artifacts/<ident>/command): keep only what we gave it and what it set itself.
            runner.config.env = minimal_env(runner.config.env, envvars)
            runner.run()
            return runner

        await self._acquire_slot(run.stage)
        try:
            log.info("running %s (%s) for %s", playbook, run.stage.value, run.proposal_id)
            runner = await self._run_heartbeating(execute, cancelled, run.stage, split)
        finally:
            self._slots.release()
        return runner, events

    def _result(
        self,
        job: Job,
        playbook: str,
        events: list[dict[str, Any]],
        status: str,
        rc: int,
        started: datetime,
        finished: datetime,
    ) -> PlaybookResult:
        run = job.run
        tasks = parse_events(events)
        successful = status == "successful" and rc == 0
        facts, refused = run_facts(events, tasks, run.stage, job.action, successful)
        plan = None
        if run.stage is Stage.PREVIEW:
            fleet = job.policy.service_hosts(run.service, run.environment)
            plan = preview_plan(tasks, job.hosts or [], fleet, job.action, self.settings)
        return PlaybookResult(
            stage=run.stage,
            playbook=playbook,
            # A run whose declared facts are refused did not give verify and rollback what they
            # need: a preview so is refused before anyone approves, an execution is rolled back.
            status=FACTS_REFUSED if refused else status,
            rc=rc,
            ok=successful and refused is None,
            tasks=tasks,
            host_facts=facts,
            started_at=started,
            finished_at=finished,
            error=refused or (None if status == "successful" else first_failure(tasks, status)),
            playbooks_digest=job.digest,
            plan=plan,
        )

    async def _acquire_slot(self, stage: Stage) -> None:
        # Heartbeat while queued for a slot too: when more playbooks are due than there are slots
        # (a worker restarted with several retried executions), a silent wait would time out.
        waiter = asyncio.ensure_future(self._slots.acquire())
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=HEARTBEAT_SECONDS)
                if done:
                    return
                activity.heartbeat(f"{stage.value}: waiting for a playbook slot")
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._slots.release()
            waiter.cancel()
            raise

    async def _run_heartbeating(
        self, execute: Any, cancelled: threading.Event, stage: Stage, split: StageSplit | None
    ) -> Any:
        future = asyncio.get_running_loop().run_in_executor(None, execute)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=HEARTBEAT_SECONDS)
                if done:
                    break
                activity.heartbeat((split.current() if split else stage).value)
        except asyncio.CancelledError:
            # Stop ansible-runner (it kills the playbook) before reporting the cancellation.
            cancelled.set()
            await asyncio.shield(future)
            raise
        return future.result()


def playbooks_digest(playbooks_dir: Path) -> str:
    """sha256 over every file Ansible reads from the playbook tree (project, inventory, env)."""
    digest = hashlib.sha256()
    for sub in ("project", "inventory", "env"):
        root = playbooks_dir / sub
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(playbooks_dir)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def preview_plan(
    tasks: list[TaskResult], limit: list[str], fleet: list[str], action: ActionSpec, settings: Settings
) -> RolloutPlan:
    """The hosts the preview ran on, cut into the action's batches, with its stage timeouts."""
    hosts = previewed_hosts(tasks, limit) if limit else []
    rollout = action.rollout
    timeouts = {
        stage.value: (
            t.total_seconds()
            if (t := action.timeouts.for_stage(stage))
            else float(settings.playbook_timeout_seconds)
        )
        for stage in Stage
    }
    return RolloutPlan(
        hosts=hosts,
        fleet=fleet,
        batches=make_batches(hosts, rollout.batch if rollout else max(len(hosts), 1)),
        max_failed=rollout.max_failed if rollout else 0,
        pause_seconds=rollout.pause.total_seconds() if rollout and rollout.pause else 0.0,
        timeouts=timeouts,
        verify_separately=action.verify_separately,
    )


# Variables of the worker's environment a playbook run may see: nothing else is passed on
# (no database URL, API key or cloud credential reaches ansible-playbook or its artifacts).
PASSED_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSH_AUTH_SOCK")


def ansible_env(settings: Settings | None = None) -> dict[str, str]:
    # ansible-runner execs `ansible-playbook` by name: make it the one beside this Python.
    bin_dir = str(Path(sys.executable).parent)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            # On by default (ansible-runner would turn it off): an SSH host must prove its key.
            "ANSIBLE_HOST_KEY_CHECKING": "True",
        }
    )
    if settings is not None and settings.ssh_key_file is not None:
        env["ANSIBLE_PRIVATE_KEY_FILE"] = str(settings.ssh_key_file.expanduser())
    if settings is not None and settings.ssh_known_hosts_file is not None:
        known = settings.ssh_known_hosts_file.expanduser()
        env["ANSIBLE_SSH_COMMON_ARGS"] = f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
    return env


def minimal_env(prepared: dict[str, str], given: dict[str, str]) -> dict[str, str]:
    """ansible-runner's prepared environment without the worker's own variables: ours, plus
    the ones ansible-runner set itself (callbacks, its artifact dir)."""
    inherited = {k for k, v in os.environ.items() if prepared.get(k) == v}
    return {k: v for k, v in prepared.items() if k in given or k not in inherited}


def remove_old_artifacts(artifacts_dir: Path, keep_seconds: float) -> None:
    """Remove runs' artifacts older than `keep_seconds`: task output may hold what the target
    printed, and it belongs on disk only as long as someone may need to debug a run."""
    if not artifacts_dir.is_dir():
        return
    cutoff = time.time() - keep_seconds
    for proposal_dir in artifacts_dir.iterdir():
        for run_dir in proposal_dir.iterdir() if proposal_dir.is_dir() else []:
            try:
                if run_dir.stat().st_mtime < cutoff:
                    shutil.rmtree(run_dir, ignore_errors=True)
            except FileNotFoundError:
                continue  # another worker removed it first
        try:
            proposal_dir.rmdir()  # only when empty
        except OSError:
            pass


def parse_events(events: Any) -> list[TaskResult]:
    tasks: list[TaskResult] = []
    for event in events:
        kind = event.get("event")
        data = event.get("event_data", {})
        if kind in TASK_EVENTS:
            res = data.get("res") or {}
            changed = bool(res.get("changed")) and kind == "runner_on_ok"
            tasks.append(
                TaskResult(
                    host=str(data.get("host", "")),
                    task=str(data.get("task", "")),
                    status="changed" if changed else TASK_EVENTS[kind],
                    changed=changed,
                    diff=format_diff(res.get("diff")),
                    msg=str(res["msg"])[:2000] if res.get("msg") else None,
                    duration_seconds=data.get("duration"),
                )
            )
    return tasks


def format_diff(diff: Any) -> str | None:
    if not diff:
        return None
    parts = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if "prepared" in part:
            out.append(str(part["prepared"]))
            continue
        if "before" in part or "after" in part:
            before = str(part.get("before", "")).splitlines(keepends=True)
            after = str(part.get("after", "")).splitlines(keepends=True)
            out.append(
                "".join(
                    difflib.unified_diff(
                        before,
                        after,
                        fromfile=str(part.get("before_header", "before")),
                        tofile=str(part.get("after_header", "after")),
                    )
                )
                or f"- {''.join(before).strip()}\n+ {''.join(after).strip()}\n"
            )
    text = "\n".join(p for p in out if p)
    return text[:8000] or None


def first_failure(tasks: list[TaskResult], status: str) -> str:
    for task in tasks:
        if task.status in ("failed", "unreachable"):
            where = f" on {task.host}" if task.host else ""
            return f"task {task.task!r} {task.status}{where}: {task.msg or ''}".strip()
    return f"playbook {status}"

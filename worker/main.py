"""Worker wiring: the remediation and dedup claim workflows, their activities, and the playbook queue.

Two Temporal workers share one process. The main one polls the proposal task queue (workflows,
checks, audit, notifications). The playbook one polls `<queue>.playbooks` and takes at most
INTERLOCK_MAX_CONCURRENT_PLAYBOOKS tasks, so a worker never accepts more Ansible runs than it has
cores for: the rest stay on the queue for another worker instead of waiting here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from opentelemetry.trace import Tracer
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

from interlock import tracing
from interlock.activities.ansible import PlaybookRunner
from interlock.activities.audit import AuditRecorder
from interlock.activities.checks import ProposalChecks
from interlock.activities.gate import GateActivities
from interlock.activities.guard import GuardActivities
from interlock.keys import ensure_audit_signing_key
from interlock.sandbox import workflow_runner
from interlock.settings import Settings
from interlock.workflows.dedup import DedupClaimWorkflow
from interlock.workflows.remediation import RemediationWorkflow, playbook_task_queue

log = logging.getLogger(__name__)
ALIVE_EVERY_SECONDS = 10.0


def alive_file(settings: Settings) -> Path:
    return settings.home_dir / "worker.alive"


def is_alive(settings: Settings) -> bool:
    """The worker in this state folder touched its alive file lately (both pollers running)."""
    try:
        age = time.time() - alive_file(settings).stat().st_mtime
    except OSError:
        return False
    return age < 3 * ALIVE_EVERY_SECONDS


class InterlockWorker:
    """The main worker and the playbook worker, run and stopped together; once both have
    stopped, the audit store's and the checks' connections are closed."""

    def __init__(
        self,
        main: Worker,
        playbooks: Worker,
        audit: AuditRecorder | None = None,
        checks: ProposalChecks | None = None,
        gate: GateActivities | None = None,
    ):
        self.main = main
        self.playbooks = playbooks
        self._workers = (main, playbooks)
        self._audit = audit
        self._checks = checks
        self._gate = gate

    async def _close(self) -> None:
        if self._audit is not None:
            self._audit.close()
        if self._gate is not None:
            self._gate.close()
        if self._checks is not None:
            await self._checks.aclose()

    async def run(self) -> None:
        tasks = [asyncio.create_task(w.run()) for w in self._workers]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # One stopped (shutdown, or a fatal error): stop the other, then surface any error.
            if not all(t.done() for t in tasks):
                await self.shutdown()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        await self._close()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    @property
    def is_running(self) -> bool:
        return all(w.is_running for w in self._workers)

    async def shutdown(self) -> None:
        """Stop polling; running activities get the grace period to finish, then are handed back."""
        await asyncio.gather(*(w.shutdown() for w in self._workers if w.is_running))

    async def __aenter__(self) -> InterlockWorker:
        for w in self._workers:
            await w.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for w in reversed(self._workers):
            await w.__aexit__(exc_type, exc, tb)
        await self._close()


def build_worker(
    client: Client,
    settings: Settings,
    task_queue: str | None = None,
    *,
    stand_in: Sequence[Callable[..., Any]] | None = None,
    tracer: Tracer | None = None,
    **worker_options: Any,
) -> InterlockWorker:
    """The production worker pair; `stand_in` swaps in stand-ins for the Ansible activities.

    Only the benchmarks use it (bench/noop.py: labelled no-ops of the same names and shapes,
    run_playbook and run_change), to measure the engine without Ansible; `worker_options` go to
    the main temporalio Worker.
    """
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    if settings.audit_signing_key is None:
        # A dev key on first start; production gives INTERLOCK_AUDIT_SIGNING_KEY (kept off the
        # database host), which must then exist.
        ensure_audit_signing_key(settings.audit_signing_key_file)
    queue = task_queue or settings.task_queue
    tracer = tracer or tracing.tracer(settings)
    checks = ProposalChecks(settings, client)
    audit = AuditRecorder(settings)
    playbooks = PlaybookRunner(settings, tracer, execution_runs=audit.execution_runs)
    ansible = list(stand_in) if stand_in else [playbooks.run_playbook, playbooks.run_change]
    gate = GateActivities(settings)
    guard = GuardActivities(settings, client)
    grace = timedelta(seconds=settings.shutdown_grace_seconds)
    # A client connected by interlock.temporal already traces, and its interceptors apply to
    # the workers too: adding another would record every span twice.
    traced = any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])
    interceptors = [] if traced else [TracingInterceptor(tracer)]
    main = Worker(
        client,
        task_queue=queue,
        interceptors=interceptors,
        workflows=[RemediationWorkflow, DedupClaimWorkflow],
        workflow_runner=workflow_runner(),
        activities=[
            checks.check_proposal,
            checks.recheck_evidence,
            # Proposals started before the playbook queue existed still schedule their
            # playbooks here; PlaybookRunner's own semaphore bounds those.
            *ansible,
            gate.precheck,
            gate.notify,
            guard.governance_for,
            guard.cancel_requested_by,
            audit.record_event,
            audit.record_events,
            audit.evaluate_graduation,
        ],
        max_concurrent_activities=settings.max_concurrent_activities,
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=grace,
        **worker_options,
    )
    playbook_worker = Worker(
        client,
        task_queue=playbook_task_queue(queue),
        interceptors=interceptors,
        activities=ansible,
        max_concurrent_activities=settings.max_concurrent_playbooks,
        graceful_shutdown_timeout=grace,
    )
    return InterlockWorker(main, playbook_worker, audit, checks, gate)


async def run_worker(settings: Settings) -> None:
    """Poll until SIGTERM or SIGINT, then shut down gracefully (what `interlock worker` runs)."""
    from interlock.temporal import connect, ensure_search_attributes
    from interlock.tracing import shutdown_tracing

    client = await connect(settings)
    try:
        await ensure_search_attributes(client)
    except Exception as exc:  # noqa: BLE001 - Temporal Cloud registers them with tcld, not the SDK
        log.warning("could not register search attributes (%s); register them as the operator", exc)
    worker = build_worker(client, settings)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    running = asyncio.create_task(worker.run())
    log.info(
        "worker polling %s and %s at %s (up to %d playbooks at once)",
        settings.task_queue,
        playbook_task_queue(settings.task_queue),
        settings.temporal_address,
        settings.max_concurrent_playbooks,
    )
    stop = asyncio.create_task(stopping.wait())
    beat = asyncio.create_task(_touch_while_running(worker, alive_file(settings)))
    metrics = None
    if settings.worker_metrics_port:
        from interlock.audit.exporter import serve_metrics

        metrics = asyncio.create_task(
            serve_metrics(settings, settings.worker_metrics_port, host="0.0.0.0", store=False)
        )
    try:
        await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():
            log.info("stopping: running activities get %ss to finish", settings.shutdown_grace_seconds)
            await worker.shutdown()
        await running
        log.info("worker stopped")
    finally:
        stop.cancel()
        beat.cancel()
        if metrics is not None:
            metrics.cancel()
        alive_file(settings).unlink(missing_ok=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            shutdown_tracing()


async def _touch_while_running(worker: InterlockWorker, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        if worker.is_running:
            path.touch()
            await asyncio.sleep(ALIVE_EVERY_SECONDS)
        else:
            await asyncio.sleep(0.2)  # starting up: touch as soon as both workers poll


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker(Settings()))


if __name__ == "__main__":
    main()

"""Worker wiring: the remediation workflow and its activities on one task queue."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from opentelemetry.trace import Tracer
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

from activities.ansible import PlaybookRunner
from activities.audit import AuditRecorder
from activities.checks import ProposalChecks
from activities.gate import GateActivities
from interlock import tracing
from interlock.settings import Settings
from workflows.remediation import RemediationWorkflow

log = logging.getLogger(__name__)


class InterlockWorker(Worker):
    """A Worker that closes the audit store's connections once it has stopped."""

    def __init__(self, *args: Any, audit: AuditRecorder, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._audit = audit

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self._audit.close()


def build_worker(
    client: Client, settings: Settings, task_queue: str | None = None, tracer: Tracer | None = None
) -> Worker:
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    tracer = tracer or tracing.tracer(settings)
    checks = ProposalChecks(settings)
    playbooks = PlaybookRunner(settings, tracer)
    gate = GateActivities(settings)
    audit = AuditRecorder(settings)
    # A client connected by interlock.temporal already traces, and its interceptors apply to
    # the worker too: adding another would record every span twice.
    traced = any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])
    return InterlockWorker(
        client,
        task_queue=task_queue or settings.task_queue,
        interceptors=[] if traced else [TracingInterceptor(tracer)],
        workflows=[RemediationWorkflow],
        activities=[
            checks.check_proposal,
            playbooks.run_playbook,
            gate.precheck,
            gate.notify,
            audit.record_event,
        ],
        # PlaybookRunner bounds Ansible runs itself (max_concurrent_playbooks); this bounds
        # the cheap activities around them.
        max_concurrent_activities=settings.max_concurrent_playbooks + 8,
        graceful_shutdown_timeout=timedelta(seconds=30),
        audit=audit,
    )


async def run_worker(settings: Settings) -> None:
    from interlock.temporal import connect

    client = await connect(settings)
    worker = build_worker(client, settings)
    log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
    await worker.run()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker(Settings()))


if __name__ == "__main__":
    main()

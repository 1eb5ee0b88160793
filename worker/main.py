"""Worker wiring: the remediation workflow and its activities on one task queue."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.ansible import PlaybookRunner
from activities.audit import AuditRecorder
from activities.checks import ProposalChecks
from activities.gate import GateActivities
from interlock.settings import Settings
from workflows.remediation import RemediationWorkflow

log = logging.getLogger(__name__)


def build_worker(client: Client, settings: Settings, task_queue: str | None = None) -> Worker:
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    checks = ProposalChecks(settings, client)
    playbooks = PlaybookRunner(settings)
    gate = GateActivities(settings)
    audit = AuditRecorder(settings)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[RemediationWorkflow],
        activities=[
            checks.check_proposal,
            checks.recheck_evidence,
            playbooks.run_playbook,
            gate.precheck,
            gate.notify,
            audit.record_event,
        ],
        # PlaybookRunner bounds Ansible runs itself (max_concurrent_playbooks); this bounds
        # the cheap activities around them.
        max_concurrent_activities=settings.max_concurrent_playbooks + 8,
        graceful_shutdown_timeout=timedelta(seconds=30),
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

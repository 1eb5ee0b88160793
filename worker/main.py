"""Worker wiring: the remediation and dedup claim workflows and their activities on one task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.ansible import PlaybookRunner
from activities.audit import AuditRecorder
from activities.checks import ProposalChecks
from activities.gate import GateActivities
from interlock.settings import Settings
from workflows.dedup import DedupClaimWorkflow
from workflows.remediation import RemediationWorkflow

log = logging.getLogger(__name__)


def build_worker(
    client: Client,
    settings: Settings,
    task_queue: str | None = None,
    *,
    run_playbook: Callable[..., Any] | None = None,
    **worker_options: Any,
) -> Worker:
    """The production worker; `run_playbook` swaps in a stand-in for the Ansible activity.

    Only the benchmarks use it (bench/noop.py, a labelled no-op of the same name and shape),
    to measure the engine without Ansible; `worker_options` go to temporalio's Worker.
    """
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    checks = ProposalChecks(settings, client)
    playbooks = PlaybookRunner(settings)
    gate = GateActivities(settings)
    audit = AuditRecorder(settings)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[RemediationWorkflow, DedupClaimWorkflow],
        workflow_runner=workflow_runner(),
        activities=[
            checks.check_proposal,
            checks.recheck_evidence,
            run_playbook or playbooks.run_playbook,
            gate.precheck,
            gate.notify,
            audit.record_event,
        ],
        # PlaybookRunner bounds Ansible runs itself (max_concurrent_playbooks); this bounds
        # the cheap activities around them.
        max_concurrent_activities=settings.max_concurrent_playbooks + 8,
        graceful_shutdown_timeout=timedelta(seconds=30),
        **worker_options,
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    # The approval validator checks Ed25519 signatures. cryptography's Rust core imports
    # `cryptography.exceptions` lazily when a signature is bad; inside the sandbox that import
    # is refused and the panic kills the worker. Passing the package through makes a forged
    # token an ordinary refusal.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography")
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

"""The Temporal server, then the worker, SIGKILLed under load, and brought back.

PROPOSALS proposals wait for approval and RUNNING of them are approved, so their playbooks are
running (real Ansible against the lab) when the kill comes. Afterwards every proposal reaches a
final status, no playbook's change happens twice (the lab's changes.jsonl), and no audit event is
lost or duplicated (the audit store). The dev server is one this test starts with --db-filename
and restarts on the same port; the worker is a real `interlock worker` process.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from bench.stack import DevServer, kill_process, start_worker_process
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.system.drills.conftest import PROPOSALS, RUNNING, SERVICES
from tests.system.drills.support import (
    all_final,
    approve,
    check_audit,
    check_changes,
    execution_started,
    reject,
    submit_many,
    wait_awaiting,
    wait_for,
)

# Each proposal here runs real Ansible (a check-mode preview, and for some execute and verify):
# about a minute on a quiet 2-core machine, several under load, beyond the suite's 300 s default;
# `python -m bench --only drills` runs 200 proposals (about 1.5 s of previews each on 2 cores).
pytestmark = pytest.mark.timeout(max(900, 12 * PROPOSALS))


@pytest.mark.parametrize("victim", ["server", "worker"])
async def test_kill_under_load_loses_nothing_and_runs_nothing_twice(
    victim: str,
    drill_server: DevServer,
    drill_client: Client,
    drill_settings: Settings,
    drill_lab: Lab,
    tmp_path: Path,
) -> None:
    client, settings = drill_client, drill_settings
    queue = f"drill-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start_worker_process(settings, queue, log)
    try:
        ids = await submit_many(client, settings, queue, PROPOSALS, f"kill-{victim}", SERVICES)
        await wait_awaiting(client, queue, ids)
        running, waiting = ids[:RUNNING], ids[RUNNING:]
        results = await asyncio.gather(*(approve(client, pid) for pid in running))
        assert all(r.status is ProposalStatus.EXECUTING for r in results)
        await wait_for(
            lambda: all(execution_started(settings, pid) for pid in running), "the playbooks to start"
        )

        if victim == "server":
            drill_server.kill()
            drill_server.start()
        else:
            kill_process(worker)
            worker = start_worker_process(settings, queue, log)

        # Every waiting proposal is decided after the restart: one more approved while the
        # running ones may still run, the rest rejected.
        late, rejected = waiting[:1], waiting[1:]
        await asyncio.gather(*(reject(client, p) for p in rejected))
        await asyncio.gather(*(approve(client, pid) for pid in late))
        finals = await all_final(client, ids)
    finally:
        kill_process(worker)

    for pid in [*running, *late]:
        assert finals[pid].status is ProposalStatus.COMPLETED, (
            pid,
            finals[pid].reasons,
            log.read_text()[-3000:],
        )
    for pid in rejected:
        assert finals[pid].status is ProposalStatus.REJECTED, (pid, finals[pid].status)
        assert finals[pid].execution is None
    check_changes(drill_lab, finals)
    check_audit(settings, finals)
    assert drill_lab.status()["services"]["checkout-api"]["healthy"]

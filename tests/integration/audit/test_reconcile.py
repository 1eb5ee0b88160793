"""Reconcile records every way a proposal can end that the store does not explain: a run terminated
from outside (a real workflow on the real server), a run closed without a `final` event, and a store
proposal that never ended whose history is gone from the server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from temporalio.client import Client

from interlock.audit import open_store
from interlock.audit.history import HistoryFacts, compare, histories_gone
from interlock.audit.store import AuditStore
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import event, lifecycle
from tests.integration.audit.workflow_support import audit_settings, interlock
from tests.support import make_proposal, propose


async def test_a_terminated_run_and_a_vanished_history_are_audit_exceptions(
    client: Client, settings: Settings, backend: Backend, alerting_lab: Lab, tmp_path: Path
) -> None:
    s = audit_settings(settings, tmp_path / "home", backend)
    proposal = make_proposal(s, "restart_service")
    pid = proposal.proposal_id
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
        handle = client.get_workflow_handle(pid)
        run_id = (await handle.describe()).run_id
        await handle.terminate(reason="pulled from the Web UI")

    code, output = await interlock(s, "audit", "reconcile", "--workflow-id", pid, "--json")

    assert code == 1, output
    report = json.loads(output)
    assert [(d["problem"], d["run_id"]) for d in report["differences"]] == [("terminated", run_id)]
    assert "pulled from the Web UI" in report["differences"][0]["detail"]
    assert report["newly_recorded"] == 1
    code, output = await interlock(s, "audit", "reconcile", "--workflow-id", pid, "--json")
    assert json.loads(output)["newly_recorded"] == 0, "recorded once, not on every run"
    with open_store(s) as store:
        (exception,) = [e for e in store.timeline(pid) if e.kind == "audit_exception"]
        assert exception.data["problem"] == "terminated"

        # A proposal the store knows, submitted and never ended, with no workflow on the server.
        gone = f"prop-gone-{uuid.uuid4().hex[:8]}"
        store.append(event(gone, "submitted", actor="opsgpt", status="submitted"))
    code, output = await interlock(s, "audit", "reconcile", "--workflow-id", gone, "--json")
    assert code == 1, output
    report = json.loads(output)
    assert [(d["proposal_id"], d["problem"]) for d in report["differences"]] == [(gone, "history_gone")]
    assert report["newly_recorded"] == 1


def test_only_proposals_that_never_ended_count_as_lost_histories(store: AuditStore) -> None:
    for e in lifecycle("p-ended") + lifecycle("p-seen", start=10):
        store.append(e)
    store.append(event("p-open", "submitted", 20))

    diffs, ended = histories_gone(store, {"p-seen"}, None)

    # p-ended was most likely purged after retention: the store is its record, not an exception.
    assert [(d.proposal_id, d.problem) for d in diffs] == [("p-open", "history_gone")]
    assert ended == 1
    assert histories_gone(store, {"p-seen", "p-open"}, None)[0] == []


def test_a_run_closed_without_a_final_event(store: AuditStore) -> None:
    store.append(event("p-4", "submitted"))
    failed = HistoryFacts("p-4", proposal_id="p-4", run_id="run-1", closed=True, close="failed")
    assert [(d.problem, d.run_id) for d in compare(failed, store)] == [("no_final", "run-1")]

    continued = HistoryFacts("p-4", proposal_id="p-4", run_id="run-1", closed=True, close="continued_as_new")
    assert compare(continued, store) == []
    # Any `final` event explains the close (a cancelled proposal will end with one too).
    store.append(event("p-4", "final", 5, status="expired"))
    assert compare(failed, store) == []

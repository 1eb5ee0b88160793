"""What an auditor runs against a real proposal: its trace (one span per Ansible task, checked with
an in-memory exporter and through `interlock trace`), replay of a history exported with the real
`temporal` CLI and of one with a non-deterministic change, reconcile finding a deleted audit row,
and the export bundle checked without the server.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from interlock.audit import open_store
from interlock.audit.metrics import compute_metrics
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER
from interlock.tracing import TRACES_FILE, JsonLinesSpanExporter
from interlock.worker.main import build_worker
from tests.conftest import temporal_cli
from tests.integration.audit.conftest import Backend
from tests.integration.audit.workflow_support import audit_settings, interlock
from tests.support import final, make_proposal, propose, signed


async def test_trace_replay_reconcile_and_export(
    client: Client, settings: Settings, backend: Backend, alerting_lab: Lab, tmp_path: Path
) -> None:
    s = audit_settings(settings, tmp_path / "home", backend)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # The same spans into the state folder's file, which `interlock trace` reads.
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(s.home_dir / TRACES_FILE)))
    tracer = provider.get_tracer("test")
    traced = await Client.connect(
        s.temporal_address, data_converter=DATA_CONVERTER, interceptors=[TracingInterceptor(tracer)]
    )
    proposal = make_proposal(s, "restart_service")
    pid = proposal.proposal_id
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    async with build_worker(traced, s, task_queue, tracer=tracer):
        await propose(traced, s, task_queue, proposal)
        await signed(traced, s, pid, "alice")
        done = await final(traced, pid)
        # `interlock show` queries the workflow: while a worker is there to answer.
        show_code, show_output = await interlock(s, "show", pid)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert done.execution is not None and done.execution.tasks

    # --- the trace: one per proposal, a span per stage, a span per Ansible task ---------------
    spans = memory.get_finished_spans()
    # The submission's span starts the proposal's trace; every activity of the workflow is in it.
    # (Queries and Updates are separate client calls, each a trace of its own.)
    (start,) = [sp for sp in spans if sp.name == "StartWorkflow:RemediationWorkflow"]
    trace_id = start.context.trace_id
    activities = [
        sp
        for sp in spans
        if sp.name.startswith("RunActivity:") and (sp.attributes or {}).get("temporalWorkflowID") == pid
    ]
    assert activities and {sp.context.trace_id for sp in activities} == {trace_id}
    assert any(
        sp.name == "CompleteWorkflow:RemediationWorkflow" and sp.context.trace_id == trace_id for sp in spans
    )
    in_trace = [sp for sp in spans if sp.context.trace_id == trace_id]
    stages = {sp.name: sp for sp in in_trace if sp.name.startswith("stage: ")}
    assert {"stage: preview", "stage: execute", "stage: verify"} <= set(stages)
    execute = stages["stage: execute"]
    tasks = [sp for sp in in_trace if sp.parent is not None and sp.parent.span_id == execute.context.span_id]
    assert [sp.attributes["ansible.task"] for sp in tasks] == [t.task for t in done.execution.tasks]
    for sp, result in zip(tasks, done.execution.tasks, strict=True):
        assert sp.name == f"ansible task: {result.task}"
        assert sp.attributes["ansible.host"] == result.host
        assert sp.attributes["ansible.changed"] is result.changed
        assert sp.attributes["ansible.failed"] is False
        assert sp.attributes["ansible.duration_seconds"] >= 0
        assert execute.start_time <= sp.start_time <= sp.end_time <= execute.end_time
    assert any(sp.attributes["ansible.changed"] for sp in tasks), "the restart task changed something"
    with open_store(s) as store:
        events = store.timeline(pid)
    assert {e.trace_id for e in events} == {f"{trace_id:032x}"}, "every audit event names the trace"

    code, output = await interlock(s, "trace", pid)
    assert code == 0, output
    assert f"{trace_id:032x}" in output
    assert "stage: execute" in output and "ansible task: " in output and " ms" in output
    assert show_code == 0, show_output
    assert f"Trace: {trace_id:032x}" in show_output

    # --- replay: a history exported by the real `temporal` CLI, then one made non-deterministic --
    exported = tmp_path / "history.json"
    shown = subprocess.run(
        [temporal_cli(), "workflow", "show", "--output", "json", "-w", pid, "--address", s.temporal_address],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    exported.write_text(shown.stdout)
    code, output = await interlock(s, "audit", "replay", "--history", str(exported))
    assert code == 0, output
    assert "replay: OK" in output
    assert "decision: approve" in output and "alice (signed token)" in output
    assert "completed" in output

    doc = json.loads(exported.read_text())
    scheduled = next(e for e in doc["events"] if "activityTaskScheduledEventAttributes" in e)
    scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "check_proposal_v0"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc))
    code, output = await interlock(s, "audit", "replay", "--history", str(changed))
    assert code == 1, output
    assert "replay: FAILED" in output

    code, output = await interlock(s, "audit", "replay", "--workflow-id", pid)
    assert code == 0 and "replay: OK" in output, output

    # --- export: a bundle checkable without the server ------------------------------------------
    bundle = tmp_path / "bundle"
    code, output = await interlock(s, "audit", "export", pid, "--out", str(bundle))
    assert code == 0, output
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
    rows = [json.loads(line) for line in (bundle / "events.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows] == [e.kind for e in events]
    for r in rows:
        assert hashlib.sha256((r["prev_hash"] + r["canonical"]).encode()).hexdigest() == r["hash"]
    signatures = json.loads((bundle / "signatures.json").read_text())
    assert [(c["approver"], c["valid"]) for c in signatures] == [("alice", True)], signatures
    verification = json.loads((bundle / "verification.json").read_text())
    assert verification["chain"]["ok"] and verification["replay"]["deterministic"]
    assert verification["policy_matches"]
    assert "sha256sum -c SHA256SUMS" in (bundle / "README.md").read_text()
    # Offline, with only the worker's audit public key: every event vouched for by a checkpoint.
    public_key = str(s.keys_dir / "audit-signing.pub")
    code, output = await interlock(s, "audit", "verify", "--bundle", str(bundle), "--public-key", public_key)
    assert code == 0, output
    assert f"bundle intact: {len(events)} event(s), {len(events)} vouched for" in output

    # --- reconcile: a deleted audit row is an audit exception -----------------------------------
    code, output = await interlock(s, "audit", "reconcile", "--workflow-id", pid)
    assert code == 0 and "agree" in output, output
    started = next(e for e in events if e.kind == "execution_started")
    if backend.name == "sqlite":
        with sqlite3.connect(s.home_dir / "audit.db") as conn:
            conn.execute("DELETE FROM audit_events WHERE event_id = ?", (started.event_id,))
        conn.close()
    else:
        backend.sql("DELETE FROM audit_events WHERE event_id = :id", id=started.event_id)
    code, output = await interlock(s, "audit", "reconcile", "--workflow-id", pid, "--json")
    assert code == 1, output
    report = json.loads(output)
    assert [(d["problem"], d["event_id"]) for d in report["differences"]] == [("missing", started.event_id)]
    assert report["newly_recorded"] == 1
    code, output = await interlock(s, "audit", "reconcile", "--workflow-id", pid, "--json")
    assert code == 1 and json.loads(output)["newly_recorded"] == 0, "recorded once, not on every run"
    with open_store(s) as store:
        assert compute_metrics(store)["overall"]["audit_exceptions"] == 1
    code, output = await interlock(s, "audit", "verify")
    assert code == 1, output

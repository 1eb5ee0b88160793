"""Tracing as the worker really runs it: the state folder's trace file, written by the batch
processor outside the workflow sandbox. The workflow's own spans (ended inside the sandbox),
the activities and each Ansible task all reach `interlock trace`, and nothing is logged about a
failed export."""

from __future__ import annotations

import logging
import uuid

import pytest
from typer.testing import CliRunner

from interlock import tracing
from interlock.cli import app
from interlock.lab import Lab
from interlock.settings import Settings
from interlock.temporal import connect
from interlock.worker.main import build_worker
from tests.support import approve, final, make_proposal, propose


async def test_workflow_activity_and_task_spans_reach_interlock_trace(
    settings: Settings, alerting_lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    client = await connect(settings)  # the CLI's and the worker's traced client
    proposal = make_proposal(settings)
    pid = proposal.proposal_id
    async with build_worker(client, settings, task_queue):
        await propose(client, settings, task_queue, proposal)
        await approve(client, pid)
        done = await final(client, pid)
    assert done.status.value == "completed", done.reasons
    assert tracing.tracer_provider(settings).force_flush()

    spans = tracing.proposal_spans(settings.home_dir / tracing.TRACES_FILE, pid)
    names = {s["name"] for s in spans}
    # Ended inside the sandbox: lost (with a traceback in the log) if exported there.
    assert "RunWorkflow:RemediationWorkflow" in names
    assert "StartActivity:run_playbook" in names
    assert "RunActivity:run_playbook" in names
    assert any(n.startswith("ansible task: ") for n in names)
    assert len({s["trace_id"] for s in spans}) == 1, "one trace per proposal"
    # Execute and verify ran in one Ansible run (run_change), traced as two stages: each its own
    # span under the activity's, timed one after the other, each with its own tasks.
    [run_change] = [s for s in spans if s["name"] == "RunActivity:run_change"]
    stages = {s["name"]: s for s in spans if s["parent_id"] == run_change["span_id"]}
    assert set(stages) == {"stage: execute", "stage: verify"}, set(stages)
    execute, verify = stages["stage: execute"], stages["stage: verify"]
    assert execute["end_ns"] <= verify["start_ns"] <= verify["end_ns"] <= run_change["end_ns"]
    assert execute["attributes"]["ansible.status"] == verify["attributes"]["ansible.status"] == "successful"
    tasks_of = {
        stage: {s["name"] for s in spans if s["parent_id"] == stages[stage]["span_id"]} for stage in stages
    }
    assert "ansible task: Restart the service" in tasks_of["stage: execute"], tasks_of
    assert "ansible task: Check the service restarted and is healthy" in tasks_of["stage: verify"], tasks_of
    assert not any("Check the service restarted" in n for n in tasks_of["stage: execute"])
    # Interlock's own hand-over play is in neither stage.
    assert not any("interlock" in n for names_ in tasks_of.values() for n in names_), tasks_of
    problems = [r for r in caplog.records if "export" in r.getMessage().lower() or r.exc_info]
    assert problems == [], [r.getMessage() for r in problems]

    env = {
        "INTERLOCK_HOME": str(settings.home_dir),
        "COLUMNS": "200",
        "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    }
    result = CliRunner().invoke(app, ["trace", pid], env=env)
    assert result.exit_code == 0, result.output
    assert "RunWorkflow:RemediationWorkflow" in result.output
    assert "RunActivity:run_playbook" in result.output and "ansible task: " in result.output

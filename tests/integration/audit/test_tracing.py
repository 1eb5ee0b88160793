"""The JSON-lines trace file and `interlock trace`: spans written by one process, read as a tree.

The Temporal-side spans (one trace per proposal, a span per Ansible task from real runs) are
checked in test_auditor_tools.
"""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import set_span_in_context
from typer.testing import CliRunner

from interlock.cli import app
from interlock.tracing import TRACES_FILE, JsonLinesSpanExporter, proposal_spans, record_task_spans, span_tree

# Two task results as ansible-runner reports them (the fields record_task_spans reads).
RUNNER_EVENTS = [
    {"event": "playbook_on_start", "event_data": {}},
    {
        "event": "runner_on_ok",
        "event_data": {
            "host": "localhost",
            "task": "restart checkout-api",
            "res": {"changed": True},
            "start": "2026-11-26T10:00:00.000000",
            "end": "2026-11-26T10:00:01.500000",
            "duration": 1.5,
        },
    },
    {
        "event": "runner_on_failed",
        "event_data": {
            "host": "localhost",
            "task": "wait for health",
            "res": {"msg": "timed out"},
            "start": "2026-11-26T10:00:01.500000",
            "end": "2026-11-26T10:00:03.000000",
            "duration": 1.5,
        },
    },
]


def write_trace(home: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(home / TRACES_FILE)))
    tracer = provider.get_tracer("test")
    root = tracer.start_span("StartWorkflow:RemediationWorkflow", attributes={"temporalWorkflowID": "p-1"})
    ctx = set_span_in_context(root)
    with tracer.start_as_current_span(
        "stage: execute", context=ctx, attributes={"interlock.stage": "execute"}
    ):
        assert record_task_spans(tracer, RUNNER_EVENTS) == 2
    root.end()
    # Another proposal's trace and a status query of p-1 (a trace of its own) in the same file.
    tracer.start_span("StartWorkflow:RemediationWorkflow", attributes={"temporalWorkflowID": "p-2"}).end()
    tracer.start_span("QueryWorkflow:status", attributes={"temporalWorkflowID": "p-1"}).end()
    provider.shutdown()


def test_spans_read_back_as_a_tree(tmp_path: Path) -> None:
    write_trace(tmp_path)
    spans = proposal_spans(tmp_path / TRACES_FILE, "p-1")
    tree = [(depth, s["name"]) for depth, s in span_tree(spans)]
    assert tree == [
        (0, "StartWorkflow:RemediationWorkflow"),
        (1, "stage: execute"),
        (2, "ansible task: restart checkout-api"),
        (2, "ansible task: wait for health"),
    ]
    tasks = {s["name"]: s for s in spans if s["name"].startswith("ansible task")}
    ok, failed = tasks["ansible task: restart checkout-api"], tasks["ansible task: wait for health"]
    assert ok["attributes"]["ansible.changed"] is True and ok["attributes"]["ansible.failed"] is False
    assert failed["attributes"]["ansible.failed"] is True and failed["status"] == "ERROR"
    assert (ok["end_ns"] - ok["start_ns"]) / 1e9 == 1.5
    assert ok["attributes"]["ansible.host"] == "localhost"


def test_trace_command(tmp_path: Path) -> None:
    write_trace(tmp_path)
    env = {"INTERLOCK_HOME": str(tmp_path), "COLUMNS": "200", "OTEL_EXPORTER_OTLP_ENDPOINT": None}
    result = CliRunner().invoke(app, ["trace", "p-1"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("StartWorkflow:RemediationWorkflow")
    assert lines[3].startswith("    ansible task: restart checkout-api  1,500.0 ms")
    assert "changed" in lines[3] and "FAILED" in lines[4] and "ERROR" in lines[4]

    result = CliRunner().invoke(app, ["trace", "p-1", "--json"], env=env)
    assert [s["depth"] for s in json.loads(result.output)] == [0, 1, 2, 2]

    result = CliRunner().invoke(app, ["trace", "p-9"], env=env)
    assert result.exit_code == 1 and "no spans for proposal 'p-9'" in result.output
    result = CliRunner().invoke(app, ["trace", "p-1"], env={**env, "INTERLOCK_HOME": str(tmp_path / "x")})
    assert result.exit_code == 1 and "no trace file" in result.output

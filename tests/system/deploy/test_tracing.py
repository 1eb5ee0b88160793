"""Traces leave a real `interlock worker` over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The receiver is a small local HTTP server standing in for the OpenTelemetry collector (no
collector binary here); it decodes what arrives with the OTLP protobuf schema.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from temporalio.client import Client

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.support import make_proposal, propose


class Collector:
    """Collects (service.name, span name) pairs from OTLP/HTTP trace exports."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            collector.spans.append((attrs.get("service.name", ""), span.name))
                collector.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()
        c.server.server_close()


async def test_a_worker_sends_activity_spans_to_the_collector(
    client: Client,
    settings: Settings,
    task_queue: str,
    collector: Collector,
    tmp_path: Path,
    checkout_degraded: Lab,
) -> None:
    interlock = str(Path(sys.executable).parent / "interlock")
    env = cli_env(settings, task_queue) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "interlock-worker",
        "INTERLOCK_HOME": str(tmp_path),  # its own alive file
        "INTERLOCK_POLICY": str(settings.effective_policy_file),
    }
    with (tmp_path / "worker.log").open("ab") as log:
        worker = subprocess.Popen([interlock, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        state = await propose(client, settings, task_queue, make_proposal(settings, "restart_service"))
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        # The container health check: the worker is polling.
        alive = subprocess.run([interlock, "worker", "--alive"], env=env, timeout=60)
        assert alive.returncode == 0
        worker.send_signal(signal.SIGTERM)  # flushes the span batch on the way out
        assert await asyncio.to_thread(worker.wait, 60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert set(collector.paths) == {"/v1/traces"}
    names = {name for service, name in collector.spans if service == "interlock-worker"}
    # Activity spans from the worker's TracingInterceptor: the checks, the preview playbook, audit.
    expected = {"RunActivity:check_proposal", "RunActivity:run_playbook", "RunActivity:record_audit_event"}
    assert expected <= names, sorted(names)
    # Stopped: the health check fails.
    assert subprocess.run([interlock, "worker", "--alive"], env=env, timeout=60).returncode == 1

"""Traces with OpenTelemetry: one trace per proposal, a span per stage, a span per Ansible task.

Spans go over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, otherwise to a JSON-lines file
in the state folder (`traces.jsonl`), which `interlock trace ID` reads back as a span tree.
Either way a batch processor exports them on its own thread, outside the workflow sandbox (a
span the workflow ends is only queued there: no file or network I/O inside the sandbox).
A provider of our own (not the global one) per state folder, so tests and embedded stacks with
different settings never share or fight over the process-wide provider.
"""

from __future__ import annotations

import fcntl
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from temporalio import workflow
from temporalio.contrib.opentelemetry import TracingInterceptor

from interlock.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

TRACES_FILE = "traces.jsonl"
WORKFLOW_ID_ATTRIBUTE = "temporalWorkflowID"
SUBMISSION_SPANS = {"StartWorkflow", "SignalWithStartWorkflow"}
TASK_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}

_providers: dict[tuple[str, str | None], TracerProvider] = {}
_providers_lock = threading.Lock()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a flat JSON object (what `traces.jsonl` holds, one per line)."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "trace_id": _hex(ctx.trace_id, 32),
        "span_id": _hex(ctx.span_id, 16),
        "parent_id": _hex(span.parent.span_id, 16) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object a line; safe across processes."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The CLI and the worker append to the same file: a whole batch under one flock.
            with self._lock, open(self.path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(text)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# Short enough that `interlock trace` sees a proposal's spans moments after its steps.
EXPORT_DELAY_MILLIS = 500


class OutsideSandboxProcessor(SpanProcessor):
    """Hands finished spans to a batch processor, which exports them on its own thread.

    Spans the workflow starts and ends (the TracingInterceptor's RunWorkflow, StartActivity
    and the like) end inside the workflow sandbox, where `open()` and sockets are refused: an
    exporter called there fails with a traceback and the span is lost. Queuing is all that
    happens here, with the sandbox's checks lifted for the queue's own bookkeeping
    (`os.getpid`, a threading event); the export runs later on the processor's thread.
    """

    def __init__(self, exporter: SpanExporter) -> None:
        self._batch = BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MILLIS)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if workflow.unsafe.in_sandbox():
            with workflow.unsafe.sandbox_unrestricted():
                self._batch.on_end(span)
        else:
            self._batch.on_end(span)

    def shutdown(self) -> None:
        self._batch.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)


def tracer_provider(settings: Settings) -> TracerProvider:
    """The provider for these settings: OTLP/HTTP if an endpoint is set, else the JSON-lines file."""
    endpoint = settings.otlp_endpoint or None
    key = (str(settings.home_dir), endpoint)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
            if endpoint:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
            else:
                exporter = JsonLinesSpanExporter(settings.home_dir / TRACES_FILE)
            # A short-lived CLI process flushes the queue at exit (shutdown_tracing, and the
            # provider's own atexit hook).
            provider.add_span_processor(OutsideSandboxProcessor(exporter))
            _providers[key] = provider
        return provider


def shutdown_tracing() -> None:
    """Flush and close every provider (spans still in an OTLP batch) before the process exits."""
    with _providers_lock:
        providers = list(_providers.values())
        _providers.clear()
    for provider in providers:
        provider.shutdown()


def tracer(settings: Settings) -> Tracer:
    return tracer_provider(settings).get_tracer("interlock")


def tracing_interceptor(settings: Settings) -> TracingInterceptor:
    return TracingInterceptor(tracer(settings))


def current_trace_id() -> str | None:
    """The trace id of the current span, if it continues a trace started elsewhere.

    A span without a parent started a trace of its own (e.g. an activity of a workflow submitted
    without tracing): its id would change on every retry, so it is not worth recording.
    """
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid or getattr(span, "parent", None) is None:
        return None
    return _hex(ctx.trace_id, 32)


def _ns(value: Any) -> int | None:
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * 1_000_000_000)
    except ValueError:
        return None


def record_task_spans(tracer_: Tracer, events: Iterable[dict[str, Any]]) -> int:
    """One child span of the current span per Ansible task result, timed from runner's events."""
    count = 0
    for event in events:
        kind = event.get("event")
        if kind not in TASK_EVENTS:
            continue
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        changed = bool(res.get("changed")) and kind == "runner_on_ok"
        failed = kind in ("runner_on_failed", "runner_on_unreachable")
        start, end = _ns(data.get("start")), _ns(data.get("end"))
        duration = data.get("duration")
        span = tracer_.start_span(
            f"ansible task: {data.get('task', '')}",
            start_time=start,
            attributes={
                "ansible.host": str(data.get("host", "")),
                "ansible.task": str(data.get("task", "")),
                "ansible.status": "changed" if changed else TASK_EVENTS[kind],
                "ansible.changed": changed,
                "ansible.failed": failed,
                "ansible.duration_seconds": float(duration) if duration is not None else 0.0,
            },
        )
        if failed:
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(res.get("msg", ""))[:200]))
        span.end(end_time=end if end and start and end >= start else None)
        count += 1
    return count


# --- Reading traces back: `interlock trace ID` --------------------------------------------


def read_spans(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash; the others still count


def proposal_spans(path: Path, proposal_id: str, trace_ids: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every span of the traces that belong to a proposal (workflow id = proposal id)."""
    spans = list(read_spans(path))
    ours = [s for s in spans if s["attributes"].get(WORKFLOW_ID_ATTRIBUTE) == proposal_id]
    # The proposal's trace starts at its submission; each status query or decision a client
    # sends is a short trace of its own, left out unless nothing else was recorded.
    wanted = set(trace_ids) | {s["trace_id"] for s in ours if s["name"].split(":")[0] in SUBMISSION_SPANS}
    if not wanted:
        wanted = {s["trace_id"] for s in ours if "Query" not in s["name"]}
    return [s for s in spans if s["trace_id"] in wanted]


def _ms(span: dict[str, Any]) -> float:
    if span.get("start_ns") is None or span.get("end_ns") is None:
        return 0.0
    return (span["end_ns"] - span["start_ns"]) / 1e6


def span_tree(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) in tree order: roots by start time, children under their parent."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in ids else None
        children.setdefault(parent, []).append(s)
    for group in children.values():
        group.sort(key=lambda s: (s.get("start_ns") or 0, s["name"]))
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            out.append((depth, s))
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return out


def _detail(span: dict[str, Any]) -> str:
    a = span["attributes"]
    if "ansible.task" in a:
        flags = [a.get("ansible.host", "")]
        flags.append("changed" if a.get("ansible.changed") else a.get("ansible.status", ""))
        if a.get("ansible.failed"):
            flags.append("FAILED")
        return " ".join(str(f) for f in flags if f)
    keys = ("interlock.stage", "interlock.status", "ansible.playbook")
    return " ".join(f"{k.split('.')[-1]}={a[k]}" for k in keys if k in a)


def trace_command(
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """The proposal's trace as a span tree with durations (from the state folder's traces.jsonl)."""
    from rich.console import Console

    from interlock.console import fail, print_json

    out = Console(highlight=False, soft_wrap=True)
    try:
        settings = Settings()
    except ValueError as exc:
        fail(f"invalid setting: {exc}", 2)
    path = settings.home_dir / TRACES_FILE
    if not path.exists():
        where = (
            f"spans are sent to {settings.otlp_endpoint}; look there"
            if settings.otlp_endpoint
            else "no proposal has been traced yet"
        )
        fail(f"no trace file at {path}: {where}")
    spans = proposal_spans(path, proposal_id, proposal_trace_ids(settings, proposal_id))
    if not spans:
        fail(f"no spans for proposal {proposal_id!r} in {path}")
    tree = span_tree(spans)
    if json_out:
        print_json([{"depth": d, "duration_ms": round(_ms(s), 3), **s} for d, s in tree])
        return
    traces = sorted({s["trace_id"] for s in spans})
    out.print(f"trace {', '.join(traces)} of {proposal_id}: {len(spans)} spans", markup=False)
    for depth, s in tree:
        status = " ERROR" if s.get("status") == "ERROR" else ""
        detail = _detail(s)
        out.print(
            f"{'  ' * depth}{s['name']}  {_ms(s):,.1f} ms{status}" + (f"  [{detail}]" if detail else ""),
            markup=False,
        )


def proposal_trace_ids(settings: Settings, proposal_id: str) -> list[str]:
    """Trace ids the audit store recorded for the proposal (none if the store is unreachable)."""
    try:
        return trace_ids_from_store(settings, proposal_id)
    except Exception:  # the trace file alone still answers
        return []


def trace_ids_from_store(settings: Settings, proposal_id: str) -> list[str]:
    from sqlalchemy import select

    from interlock.audit import open_store
    from interlock.audit.store import TABLE

    with open_store(settings) as store, store.engine.connect() as conn:
        rows = conn.execute(
            select(TABLE.c.trace_id)
            .where(TABLE.c.proposal_id == proposal_id, TABLE.c.trace_id.is_not(None))
            .distinct()
        )
        return sorted(r[0] for r in rows)

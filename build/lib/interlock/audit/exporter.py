"""The governance metrics for monitoring systems: a Prometheus `/metrics` endpoint that
`interlock up` serves, and the same figures as OpenTelemetry gauges (OTLP when configured).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader

from interlock.audit.metrics import compute_metrics, prometheus_text

if TYPE_CHECKING:
    from interlock.audit.store import AuditStore
    from interlock.settings import Settings

log = logging.getLogger(__name__)

# (OpenTelemetry name, key in compute_metrics' figures, unit, description)
GAUGES = (
    ("interlock.mttr.mean", "mttr_mean_seconds", "s", "Mean seconds from submission to completion."),
    ("interlock.mttr.median", "mttr_median_seconds", "s", "Median seconds from submission to completion."),
    (
        "interlock.first_response.median",
        "first_response_median_seconds",
        "s",
        "Median seconds from submission to the first human decision.",
    ),
    ("interlock.backlog", "backlog", "{proposal}", "Proposals submitted and not yet final."),
    ("interlock.backlog.oldest", "backlog_oldest_seconds", "s", "Age of the oldest open proposal."),
    ("interlock.override.ratio", "override_ratio", "1", "Human decisions that were rejections."),
    (
        "interlock.false_recommendation.ratio",
        "false_recommendation_ratio",
        "1",
        "Final proposals rejected, rejected by checks, rolled back or left unresolved.",
    ),
    ("interlock.escalation.ratio", "escalation_ratio", "1", "Submitted proposals that were escalated."),
    ("interlock.audit.exceptions", "audit_exceptions", "{event}", "Audit exceptions recorded."),
)


class CachedFigures:
    """compute_metrics at most once per `ttl` seconds: every gauge asks for it on each collection."""

    def __init__(self, store_factory: Callable[[], AuditStore], ttl: float = 5.0):
        self._factory = store_factory
        self._store: AuditStore | None = None
        self._ttl = ttl
        self._at = 0.0
        self._value: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self._ttl:
                if self._store is None:
                    self._store = self._factory()
                self._value = compute_metrics(self._store)
                self._at = time.monotonic()
            return self._value

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def meter_provider(figures: CachedFigures, readers: list[MetricReader]) -> MeterProvider:
    """A provider whose gauges read the audit store's figures when the readers collect."""
    provider = MeterProvider(metric_readers=readers)
    meter = provider.get_meter("interlock")

    def callback(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                value = figures.get()["overall"][key]
            except Exception as exc:  # an unreachable store must not break the exporter
                log.warning("metrics unavailable: %s", exc)
                return []
            return [] if value is None else [Observation(value)]

        return observe

    for name, key, unit, description in GAUGES:
        meter.create_observable_gauge(name, callbacks=[callback(key)], unit=unit, description=description)
    return provider


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, figures: CachedFigures) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), timeout=10)
        while (await asyncio.wait_for(reader.readline(), timeout=10)) not in (b"\r\n", b"\n", b""):
            pass
        parts = request.decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) > 1 else ""
        if len(parts) < 2 or parts[0] != "GET":
            status, body, kind = "405 Method Not Allowed", b"only GET\n", "text/plain"
        elif path != "/metrics":
            status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
        else:
            try:
                metrics = await asyncio.to_thread(figures.get)
                status, body = "200 OK", prometheus_text(metrics).encode()
                kind = "text/plain; version=0.0.4; charset=utf-8"
            except Exception as exc:
                status, body, kind = "503 Service Unavailable", f"audit store: {exc}\n".encode(), "text/plain"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_metrics(settings: Settings, port: int | None = None, host: str = "127.0.0.1") -> None:
    """Serve `/metrics` until cancelled (`interlock up` runs it as a task); port 0 turns it off.

    With OTEL_EXPORTER_OTLP_ENDPOINT set the figures are pushed over OTLP as well.
    """
    from interlock.audit import open_store

    port = settings.metrics_port if port is None else port
    if not port:
        return
    figures = CachedFigures(lambda: open_store(settings))
    provider = None
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/metrics")
        provider = meter_provider(figures, [PeriodicExportingMetricReader(exporter)])
    try:
        server = await asyncio.start_server(lambda r, w: _handle(r, w, figures), host, port)
    except OSError as exc:
        log.error("metrics endpoint not started on %s:%d: %s", host, port, exc.strerror or exc)
        return
    log.info("metrics at http://%s:%d/metrics", host, port)
    try:
        async with server:
            await server.serve_forever()
    finally:
        if provider is not None:
            provider.shutdown()
        figures.close()

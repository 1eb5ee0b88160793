"""The governance metrics for monitoring systems: a Prometheus `/metrics` endpoint that
`interlock up` (or `python -m interlock.audit.exporter`) serves, and the same figures as
OpenTelemetry gauges (OTLP when configured).

The store-derived series are the same on every replica (aggregate with `max`); the evidence
fetch series are this process's own (aggregate with `sum`). See docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader

from interlock.audit.metrics import (
    compute_metrics,
    histogram_lines,
    lifetime_figures,
    lifetime_text,
    prometheus_text,
    sample_line,
)
from interlock.evidence.fetch_stats import FETCH_BUCKETS, FETCH_STATS, SourceFetches

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


ExpireAfter = Callable[[str | None, str | None], timedelta | None]


class CachedFigures:
    """compute_metrics (and lifetime_figures) at most once per `ttl` seconds: every gauge asks
    for them on each collection."""

    def __init__(
        self,
        store_factory: Callable[[], AuditStore],
        ttl: float = 5.0,
        expire_after: ExpireAfter | None = None,
    ):
        self._factory = store_factory
        self._store: AuditStore | None = None
        self._ttl = ttl
        self._at = 0.0
        self._value: dict[str, Any] | None = None
        self._lifetime: dict[str, Any] | None = None
        self._expire_after = expire_after
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        if self._value is None or time.monotonic() - self._at > self._ttl:
            if self._store is None:
                self._store = self._factory()
            self._value = compute_metrics(self._store)
            self._lifetime = lifetime_figures(self._store, self._expire_after)
            self._at = time.monotonic()

    def get(self) -> dict[str, Any]:
        with self._lock:
            self._refresh()
            assert self._value is not None
            return self._value

    def lifetime(self) -> dict[str, Any]:
        with self._lock:
            self._refresh()
            assert self._lifetime is not None
            return self._lifetime

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


def fetch_text(tallies: dict[str, SourceFetches]) -> str:
    """This process's evidence fetches per source, in the Prometheus text format."""
    fetches, failures = "interlock_evidence_fetches_total", "interlock_evidence_fetch_failures_total"
    seconds = "interlock_evidence_fetch_seconds"
    lines = [
        f"# HELP {fetches} Evidence checks this process asked of each source.",
        f"# TYPE {fetches} counter",
        *(sample_line(fetches, [("source", n)], t.fetches) for n, t in tallies.items()),
        f"# HELP {failures} Evidence checks the source gave no usable answer to.",
        f"# TYPE {failures} counter",
        *(sample_line(failures, [("source", n)], t.failures) for n, t in tallies.items()),
        f"# HELP {seconds} Seconds one evidence check took at its source, retries included.",
        f"# TYPE {seconds} histogram",
    ]
    for n, t in tallies.items():
        lines += histogram_lines(seconds, [("source", n)], FETCH_BUCKETS, t.buckets, t.fetches, t.seconds_sum)
    return "\n".join(lines) + "\n"


def exposition(figures: CachedFigures | None) -> str:
    """The whole /metrics body: the store's figures (unless this process serves none) and this
    process's evidence fetches."""
    body = ""
    if figures is not None:
        body = prometheus_text(figures.get()) + lifetime_text(figures.lifetime())
    return body + fetch_text(FETCH_STATS.snapshot())


def policy_expiry(settings: Settings) -> ExpireAfter:
    """An approval's time limit as the policy sets it now: the action's approval_timeout, else
    its risk tier's expire_after (None when neither is known)."""
    from interlock.models import RiskTier
    from interlock.policy import load_policy

    def expire_after(action: str | None, tier: str | None) -> timedelta | None:
        try:
            policy = load_policy(settings.effective_policy_file)
        except Exception as exc:  # a broken policy file must not take the metrics down
            log.warning("approval expiry unknown: %s", exc)
            return None
        spec = policy.actions.get(action or "")
        if spec is not None and spec.approval_timeout:
            return spec.approval_timeout
        try:
            return policy.approval_rules[RiskTier(tier or "")].expire_after
        except (KeyError, ValueError):
            return None

    return expire_after


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, figures: CachedFigures | None
) -> None:
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
                text = await asyncio.to_thread(exposition, figures)
                status, body = "200 OK", text.encode()
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


async def serve_metrics(
    settings: Settings, port: int | None = None, host: str = "127.0.0.1", *, store: bool = True
) -> None:
    """Serve `/metrics` until cancelled (`interlock up` runs it as a task); port 0 turns it off.

    `store=False` serves only this process's own series (for a worker replica, when one other
    process exports the store's). With OTEL_EXPORTER_OTLP_ENDPOINT set the store's figures are
    pushed over OTLP as well.
    """
    from interlock.audit import open_store

    port = settings.metrics_port if port is None else port
    if not port:
        return
    figures = (
        CachedFigures(lambda: open_store(settings), expire_after=policy_expiry(settings)) if store else None
    )
    provider = None
    if settings.otlp_endpoint and figures is not None:
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
        if figures is not None:
            figures.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m interlock.audit.exporter`: the store's metrics alone, for one exporter beside
    any number of workers (the compose file's `metrics` service)."""
    from interlock.settings import load

    parser = argparse.ArgumentParser(prog="python -m interlock.audit.exporter")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default INTERLOCK_METRICS_PORT, 9464)")
    args = parser.parse_args(argv)
    settings = load()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, not {args.port}")
    try:
        asyncio.run(serve_metrics(settings, args.port, args.host))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

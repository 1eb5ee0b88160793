"""Traces to an OpenTelemetry collector over OTLP/HTTP, when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import logging

from opentelemetry import trace

from interlock.settings import Settings

log = logging.getLogger(__name__)
_configured: str | None = None


def configure_tracing(settings: Settings) -> bool:
    """Install a global tracer provider exporting to the collector; False when tracing is off."""
    global _configured
    if not settings.otlp_endpoint:
        return False
    if _configured is not None:
        return True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    # Given explicitly the exporter uses the URL as is, so the signal path is appended here.
    exporter = OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = settings.otlp_endpoint
    log.info("sending traces to %s as %s", settings.otlp_endpoint, settings.otel_service_name)
    return True


def shutdown_tracing() -> None:
    """Flush spans still in the batch before the process exits."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _configured is not None and shutdown is not None:
        shutdown()

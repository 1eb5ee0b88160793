"""The recommender SDK against the real intake: round trip, trace parenthood, retries, errors."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from interlock.client import (
    AuthError,
    IdempotencyConflict,
    IntakeUnavailable,
    ProposalRefused,
    RecommenderClient,
    SubmitResult,
)
from interlock.lab import Lab
from interlock.models import Proposal
from interlock.settings import Settings
from tests.integration.api.support import (
    RunningApi,
    TcpRelay,
    free_port,
    intake_settings,
    proposal_doc,
    running_api,
)
from tests.support import new_id


class RecordingTransport(httpx.HTTPTransport):
    """A real HTTP transport that also remembers what went out and what came back."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _ancestors(spans: tuple[ReadableSpan, ...], span: ReadableSpan) -> set[int]:
    by_id = {s.context.span_id: s for s in spans}
    found: set[int] = set()
    parent = span.parent
    while parent is not None:
        found.add(parent.span_id)
        parent = by_id[parent.span_id].parent if parent.span_id in by_id else None
    return found


def built_proposal(recommender: str = "triage-bot") -> Proposal:
    return RecommenderClient.build_proposal(
        proposal_id=new_id("sdk"),
        recommender=recommender,
        model_version="triage-bot/2026.11.2",
        action="restart_service",
        service="checkout-api",
        environment="lab",
        rationale="checkout-api 5xx at 34% since 10:02; a restart cleared the same leak before.",
        confidence=0.8,
        incident="INC-2001",
        evidence=[RecommenderClient.evidence("lab-monitor", "unhealthy", "5xx ratio 0.34")],
    )


async def test_round_trip_with_the_intake_span_a_child_of_the_recommenders(
    settings: Settings, worker: str, tmp_path: Path, client: Client, checkout_degraded: Lab
) -> None:
    provider, exporter = tracing()
    tracer = provider.get_tracer("triage-bot")
    proposal = built_proposal()
    home = tmp_path / "home"

    async def traced_client() -> Client:
        # The intake's Temporal client with OpenTelemetry's interceptor, as a traced deployment
        # has it: the workflow start must happen inside the intake span.
        config = client.config()
        config["interceptors"] = [TracingInterceptor(provider.get_tracer("interlock.temporal"))]
        return Client(**config)

    async with running_api(
        intake_settings(settings, home, worker), tracer_provider=provider, client_factory=traced_client
    ) as api:

        def recommender() -> tuple[object, dict[str, object], dict[str, object]]:
            with (
                RecommenderClient(api.url, api.token(), tracer_provider=provider) as sdk,
                tracer.start_as_current_span("triage-bot.remediate"),
            ):
                result = sdk.propose(proposal)
                settled = sdk.wait(proposal.proposal_id, until="settled", timeout=120)
                return result, settled, sdk.get(proposal.proposal_id)

        result, settled, state = await asyncio.to_thread(recommender)

    spans = exporter.get_finished_spans()
    (outer,) = by_name(spans, "triage-bot.remediate")
    (client_span,) = by_name(spans, "interlock.propose")
    (intake,) = by_name(spans, "interlock.intake")
    assert client_span.kind is SpanKind.CLIENT and intake.kind is SpanKind.SERVER
    assert client_span.parent is not None
    assert client_span.parent.span_id == outer.context.span_id
    assert intake.context.trace_id == client_span.context.trace_id == outer.context.trace_id
    assert intake.parent is not None and intake.parent.span_id == client_span.context.span_id
    assert intake.attributes is not None
    assert intake.attributes["interlock.proposal_id"] == proposal.proposal_id
    assert intake.attributes["http.response.status_code"] == 201
    (start,) = by_name(spans, "StartWorkflow:RemediationWorkflow")
    assert start.context.trace_id == outer.context.trace_id
    assert start.parent is not None and _ancestors(spans, start) >= {intake.context.span_id}

    assert result.trace_id == format(outer.context.trace_id, "032x")  # type: ignore[attr-defined]
    assert result.created is True  # type: ignore[attr-defined]
    assert settled["status"] == "awaiting_approval"
    assert state["risk"] is not None and state["decisions"] == []


async def test_retries_through_an_outage_with_one_idempotency_key(
    settings: Settings, task_queue: str, tmp_path: Path, client: Client
) -> None:
    port = free_port()
    down = intake_settings(settings, tmp_path / "home", task_queue, temporal_address=f"127.0.0.1:{port}")
    relay = TcpRelay(port, settings.temporal_address)
    doc = proposal_doc()
    transport = RecordingTransport()
    async with running_api(down) as api:
        sdk = RecommenderClient(
            api.url, api.token(), backoff=0.3, max_backoff=1.0, max_attempts=20, transport=transport
        )
        attempt = asyncio.create_task(asyncio.to_thread(sdk.propose, doc))
        await asyncio.sleep(1.5)
        await relay.start()
        try:
            result = await asyncio.wait_for(attempt, 60)
        finally:
            await relay.stop()
            sdk.close()

    assert result.created is True
    assert transport.statuses[0] == 503 and transport.statuses[-1] == 201
    assert {r.headers["Idempotency-Key"] for r in transport.sent} == {doc["proposal_id"]}
    await client.get_workflow_handle(doc["proposal_id"]).describe()


async def test_honours_retry_after_when_rate_limited(
    settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    transport = RecordingTransport()
    home = tmp_path / "home"
    async with running_api(intake_settings(settings, home, task_queue), rate="1/second") as api:
        sdk = RecommenderClient(api.url, api.token(), transport=transport)

        def three() -> list[bool]:
            return [sdk.propose(proposal_doc()).created for _ in range(3)]

        began = time.monotonic()
        created = await asyncio.to_thread(three)
        elapsed = time.monotonic() - began
        sdk.close()

    assert created == [True, True, True]
    assert 429 in transport.statuses
    assert elapsed >= 1.5  # two waits of about a second each, as Retry-After said


async def test_errors_are_typed_and_keep_the_details(api: RunningApi) -> None:
    good = proposal_doc()
    bad = {**proposal_doc(), "confidence": 7, "action": "reboot"}

    def calls() -> list[Exception]:
        errors: list[Exception] = []
        with RecommenderClient(api.url, api.token()) as sdk:
            sdk.propose(good, idempotency_key="key-1")
            for call in (
                lambda: sdk.propose(bad),
                lambda: sdk.propose(proposal_doc(), idempotency_key="key-1"),
                lambda: sdk.propose(proposal_doc(recommender="deploy-bot")),
                lambda: sdk.get("prop-unknown"),
            ):
                try:
                    call()
                except Exception as exc:  # noqa: BLE001 - collected and checked below
                    errors.append(exc)
        with RecommenderClient(api.url, "ilk_revoked-or-never-issued") as stranger:
            try:
                stranger.propose(proposal_doc())
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        return errors

    refused, conflict, impersonating, missing, unknown = await asyncio.to_thread(calls)

    assert isinstance(refused, ProposalRefused)
    assert {line.split(":")[0] for line in refused.details} >= {"confidence"}
    assert isinstance(conflict, IdempotencyConflict) and conflict.status_code == 409
    assert isinstance(impersonating, AuthError) and impersonating.status_code == 403
    assert getattr(missing, "status_code", None) == 404
    assert isinstance(unknown, AuthError) and unknown.status_code == 401


def test_unreachable_intake_raises_after_the_retries() -> None:
    sdk = RecommenderClient(f"http://127.0.0.1:{free_port()}", "ilk_x", max_attempts=2, backoff=0.01)
    with pytest.raises(IntakeUnavailable):
        sdk.propose(proposal_doc())


def test_build_proposal_makes_a_valid_proposal() -> None:
    proposal = built_proposal()
    assert proposal.evidence[0].observed_at <= datetime.now(UTC)
    assert proposal.target.service == "checkout-api"
    with pytest.raises(ValueError):
        RecommenderClient.build_proposal(
            proposal_id="p 1",
            recommender="triage-bot",
            model_version="m",
            action="restart_service",
            service="checkout-api",
            environment="lab",
            rationale="r",
            confidence=2.0,
            evidence=[],
        )


async def test_a_duplicate_is_followed_through_the_open_proposal(api: RunningApi) -> None:
    incident = new_id("INC")
    first, second = proposal_doc(incident=incident), proposal_doc("deploy-bot", incident=incident)

    def both() -> tuple[SubmitResult, SubmitResult]:
        with (
            RecommenderClient(api.url, api.token()) as triage,
            RecommenderClient(api.url, api.token("deploy-bot")) as deploy,
        ):
            return triage.propose(first), deploy.propose(second)

    opened, attached = await asyncio.to_thread(both)

    assert opened.created is True and opened.follow_id == first["proposal_id"]
    assert attached.created is False
    assert attached.proposal_id == second["proposal_id"]
    assert attached.duplicate_of == attached.follow_id == first["proposal_id"]

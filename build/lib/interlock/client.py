"""The recommender SDK: submit proposals to the Interlock intake and follow them to a decision.

Retries are safe because every attempt carries the same idempotency key (the proposal_id by
default), and each call propagates the caller's W3C trace context to the intake.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, TracerProvider
from pydantic import BaseModel

from interlock.models import EvidenceItem, Proposal, ProposalStatus, Target

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 502, 503, 504}
# The intake records proposals sent with this User-Agent as coming through the SDK (channel `sdk`).
# It is the client's word, so it labels the channel for metrics and decides nothing.
SDK_USER_AGENT = "interlock-sdk/1"
WaitUntil = Literal["settled", "final"]


class IntakeError(Exception):
    """The intake refused a request; `details` has one 'field: reason' line per problem."""

    def __init__(self, status_code: int, error: str, details: list[str] | None = None):
        self.status_code = status_code
        self.error = error
        self.details = details or []
        super().__init__(f"{status_code}: {error}" + (f" ({'; '.join(self.details)})" if details else ""))


class AuthError(IntakeError):
    """401 or 403: the token is unknown, revoked, or speaks for someone else."""


class ProposalRefused(IntakeError):
    """422: the proposal is invalid; nothing was started."""


class IdempotencyConflict(IntakeError):
    """409: the key (or proposal_id) was already used with a different proposal."""


class IntakeUnavailable(IntakeError):
    """The intake or Temporal stayed unavailable through every retry."""


class SubmitResult(BaseModel):
    proposal_id: str
    status: ProposalStatus
    created: bool
    duplicate_of: str | None = None
    trace_id: str | None = None
    replayed: bool = False

    @property
    def follow_id(self) -> str:
        """The proposal that decides this one's fate: the open one it was attached to as a
        duplicate, else itself. Pass it to `get` and `wait`."""
        return self.duplicate_of or self.proposal_id


def _error_for(response: httpx.Response) -> IntakeError:
    try:
        body = response.json()
        error, details = (
            str(body.get("error", response.reason_phrase)),
            list(body.get("details", [])),
        )
    except (ValueError, AttributeError):
        error, details = response.reason_phrase or "error", []
    kind: type[IntakeError] = {
        401: AuthError,
        403: AuthError,
        409: IdempotencyConflict,
        422: ProposalRefused,
    }.get(response.status_code, IntakeError)
    if response.status_code in RETRYABLE_STATUS:
        kind = IntakeUnavailable
    return kind(response.status_code, error, details)


class RecommenderClient:
    """A small synchronous client for one recommender's token."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 10.0,
        *,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        tracer_provider: TracerProvider | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": SDK_USER_AGENT},
            timeout=timeout,
            transport=transport,
        )
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._tracer = trace.get_tracer("interlock.client", tracer_provider=tracer_provider)

    def __enter__(self) -> RecommenderClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- calls ---------------------------------------------------------------------------

    def propose(
        self, proposal: Proposal | dict[str, Any], idempotency_key: str | None = None
    ) -> SubmitResult:
        """Submit a proposal; retried on 429, 503 and connection errors with the same key."""
        document = proposal.model_dump(mode="json") if isinstance(proposal, Proposal) else proposal
        key = idempotency_key or str(document.get("proposal_id", "")) or None
        with self._tracer.start_as_current_span("interlock.propose", kind=SpanKind.CLIENT) as span:
            span.set_attribute("interlock.proposal_id", str(document.get("proposal_id", "")))
            headers = {"Idempotency-Key": key} if key else {}
            response = self._send("POST", "/v1/proposals", json=document, headers=headers)
            result = SubmitResult.model_validate(response.json())
            return result.model_copy(
                update={"replayed": response.headers.get("Idempotent-Replayed") == "true"}
            )

    def get(self, proposal_id: str) -> dict[str, Any]:
        """The proposal's status, risk, decisions, reasons and evidence."""
        with self._tracer.start_as_current_span("interlock.get", kind=SpanKind.CLIENT):
            body: dict[str, Any] = self._send("GET", f"/v1/proposals/{proposal_id}").json()
            return body

    def list(self, status: ProposalStatus | str | None = None) -> list[dict[str, Any]]:
        params = {"status": str(status)} if status else None
        with self._tracer.start_as_current_span("interlock.list", kind=SpanKind.CLIENT):
            proposals: list[dict[str, Any]] = self._send("GET", "/v1/proposals", params=params).json()[
                "proposals"
            ]
            return proposals

    def wait(
        self,
        proposal_id: str,
        until: WaitUntil = "settled",
        timeout: float = 300.0,
        interval: float = 1.0,
    ) -> dict[str, Any]:
        """Poll until the proposal needs a person or is past its automatic checks ("settled"),
        or until it reached a final status ("final")."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.get(proposal_id)
            status = ProposalStatus(state["status"])
            if status.is_final or (until == "settled" and not status.is_automatic_stage):
                return state
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"proposal {proposal_id} still {status.value} after {timeout:.0f}s")
            time.sleep(interval)

    # --- building proposals ----------------------------------------------------------------

    @staticmethod
    def build_proposal(
        *,
        proposal_id: str,
        recommender: str,
        model_version: str,
        action: str,
        service: str,
        environment: str,
        rationale: str,
        confidence: float,
        evidence: Sequence[EvidenceItem | dict[str, Any]],
        parameters: dict[str, str] | None = None,
        incident: str | None = None,
    ) -> Proposal:
        """A validated `Proposal` (shape only; the intake also checks it against the policy)."""
        items = [
            e if isinstance(e, EvidenceItem) else EvidenceItem.model_validate(e, strict=False)
            for e in evidence
        ]
        return Proposal(
            proposal_id=proposal_id,
            recommender=recommender,
            model_version=model_version,
            action=action,
            target=Target(service=service, environment=environment),
            parameters=dict(parameters or {}),
            rationale=rationale,
            confidence=float(confidence),
            incident=incident,
            evidence=items,
        )

    @staticmethod
    def evidence(
        source: str, check: str, summary: str = "", observed_at: datetime | None = None
    ) -> EvidenceItem:
        """One evidence item citing `check`, a check the policy defines for `source` (e.g.
        ``evidence("lab-prometheus", "high_error_ratio")``), observed now unless told otherwise.
        The query and threshold are the policy's; free-form expressions are refused."""
        return EvidenceItem(
            source=source, ref=check, summary=summary, observed_at=observed_at or datetime.now(UTC)
        )

    # --- transport ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        # The current span (ours, child of the recommender's) becomes the intake span's parent.
        inject(headers)
        span = trace.get_current_span()
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise IntakeUnavailable(0, f"cannot reach the intake: {exc}") from exc
                delay = self._delay(attempt)
                log.warning("%s %s failed (%s); retry %d in %.1fs", method, path, exc, attempt, delay)
                span.add_event("retry", {"reason": type(exc).__name__, "delay_s": delay})
                time.sleep(delay)
                continue
            if response.status_code < 400:
                return response
            if response.status_code not in RETRYABLE_STATUS or last:
                raise _error_for(response)
            delay = self._delay(attempt, response.headers.get("Retry-After"))
            log.warning(
                "%s %s answered %d; retry %d in %.1fs",
                method,
                path,
                response.status_code,
                attempt,
                delay,
            )
            span.add_event("retry", {"status": response.status_code, "delay_s": delay})
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        exponential = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        # Full jitter: recommenders retrying after one outage should not arrive together.
        return random.uniform(exponential / 2, exponential)

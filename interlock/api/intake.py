"""The intake's shared state and its submission path: bound, rate-limit, validate, then start or
attach as a duplicate (interlock.dedup, shared with `interlock propose`).

Validation is `parse_proposal`, the same as `interlock propose`, so the HTTP intake can never
accept a proposal the CLI would refuse.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from interlock import search
from interlock.api.connection import ClientFactory, TemporalConnection
from interlock.api.errors import ApiError
from interlock.api.idempotency import MAX_KEY_LENGTH, IdempotencyStore
from interlock.api.ratelimit import FailureWindow, RateLimiter
from interlock.api.responses import SubmitAnswer
from interlock.api.settings import ApiSettings
from interlock.dedup import DedupUnsettled
from interlock.models import Channel, ProposalStatus
from interlock.policy import Policy, PolicyError, load_policy
from interlock.proposals import (
    ProposalConflict,
    ProposalInvalid,
    body_digest,
    parse_proposal,
    submit,
)
from interlock.settings import Settings
from interlock.temporal import TemporalUnavailable
from interlock.tokens import TokenStore, intake_db_path, open_intake_db

log = logging.getLogger(__name__)

# Temporal answers these when it is down or overloaded: worth a retry, not the caller's fault.
_UNAVAILABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
}
_RETRY_AFTER_UNAVAILABLE = "2"


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class Intake:
    """Everything one API process shares: stores, rate limiter, policy and Temporal client."""

    def __init__(
        self,
        settings: Settings,
        api_settings: ApiSettings,
        client_factory: ClientFactory | None = None,
    ):
        self.settings = settings
        self.api_settings = api_settings
        self.engine = open_intake_db(intake_db_path(settings.home_dir))
        self.tokens = TokenStore(intake_db_path(settings.home_dir), engine=self.engine)
        self.answers = IdempotencyStore(self.engine)
        self.limiter = RateLimiter(api_settings.parsed_rate)
        self.auth_failures = FailureWindow(api_settings.parsed_auth_failures)
        self.client_factory: ClientFactory = client_factory or TemporalConnection(settings)
        self._policy: tuple[tuple[Path | None, int], Policy] | None = None

    # --- shared pieces ---------------------------------------------------------------

    async def authenticate(self, token: str, address: str) -> str | None:
        """The recommender `token` speaks for, or None; refused with 429 while `address` has
        failed too often, before the token is even looked at (so a guess then learns nothing)."""
        wait = self.auth_failures.wait(address)
        if wait > 0:
            log.warning("authentication from %s refused: too many failures", address)
            raise ApiError(
                429,
                "too many failed authentications from this address "
                f"(limit {self.api_settings.auth_failures})",
                [f"retry after {wait:.1f}s"],
                headers={"Retry-After": RateLimiter.retry_after_header(wait)},
            )
        # SQLite may wait on a lock held by `interlock tokens`: keep it off the event loop.
        recommender = await asyncio.to_thread(self.tokens.authenticate, token)
        if recommender is None:
            self.auth_failures.fail(address)
        return recommender

    async def client(self) -> Client:
        try:
            return await self.client_factory()
        except TemporalUnavailable as exc:
            log.warning("Temporal unavailable: %s", exc)
            raise self._unavailable(str(exc)) from None

    def _unavailable(self, reason: str) -> ApiError:
        reset = getattr(self.client_factory, "reset", None)
        if callable(reset):
            reset()
        return ApiError(
            503,
            "Temporal cannot be reached; nothing was started, retry later",
            [reason[:300]],
            headers={"Retry-After": _RETRY_AFTER_UNAVAILABLE},
        )

    def rpc_error(self, exc: RPCError) -> ApiError | None:
        if exc.status in _UNAVAILABLE:
            log.warning("Temporal RPC failed: %s", exc)
            return self._unavailable(str(exc))
        return None

    def policy(self) -> Policy:
        """The policy in force, re-read when its file changes (as each CLI run would)."""
        path = self.settings.effective_policy_file
        try:
            key = (path, path.stat().st_mtime_ns if path else 0)
        except OSError:
            key = (path, -1)
        if self._policy is None or self._policy[0] != key:
            try:
                self._policy = (key, load_policy(path))
            except PolicyError as exc:
                log.error("the policy cannot be loaded: %s", exc)
                raise ApiError(500, "the policy in force cannot be loaded", exc.errors) from None
        return self._policy[1]

    # --- POST /v1/proposals ------------------------------------------------------------

    def check_declared_size(self, request: Request) -> None:
        limit = self.api_settings.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)

    async def read_body(self, request: Request) -> bytes:
        # Content-Length may be absent (chunked), so count what actually arrives.
        limit = self.api_settings.max_body
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def check_rate(self, recommender: str) -> None:
        wait = self.limiter.acquire(recommender)
        if wait > 0:
            rate = self.api_settings.rate
            raise ApiError(
                429,
                f"too many proposals from {recommender} (limit {rate})",
                [f"retry after {wait:.1f}s"],
                headers={"Retry-After": RateLimiter.retry_after_header(wait)},
            )

    async def submit(
        self,
        recommender: str,
        body: bytes,
        idempotency_key: str | None,
        channel: Channel = Channel.HTTP,
    ) -> JSONResponse:
        span = trace.get_current_span()
        span.set_attribute("interlock.recommender", recommender)
        span.set_attribute("interlock.channel", channel.value)
        if idempotency_key is not None and not _valid_key(idempotency_key):
            raise ApiError(
                422,
                "the request is invalid",
                [f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable ASCII characters"],
            )
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ApiError(422, "the body is not valid JSON", [f"(document): {exc}"]) from None
        except RecursionError:
            # json.loads recurses once per level: ~1,000 nested arrays exhaust the stack. A
            # proposal is 4 levels deep; pydantic refuses anything past 200 on its own.
            raise ApiError(
                422, "the body is nested too deeply", ["(document): JSON nested too deeply to read"]
            ) from None
        claimed = document.get("recommender") if isinstance(document, dict) else None
        if isinstance(claimed, str) and claimed != recommender:
            raise _impersonation(recommender, claimed)

        policy = self.policy()
        try:
            # The raw bytes, as the CLI passes its file's text: JSON-mode strict validation.
            proposal = parse_proposal(body, policy)
        except ProposalInvalid as exc:
            raise ApiError(422, "the proposal is invalid", exc.errors) from None
        if proposal.recommender != recommender:
            # json.loads and pydantic could in principle disagree on duplicated keys.
            raise _impersonation(recommender, proposal.recommender)
        span.set_attribute("interlock.proposal_id", proposal.proposal_id)

        key = idempotency_key or proposal.proposal_id
        digest = body_digest(proposal)
        stored = await asyncio.to_thread(self.answers.get, recommender, key)
        if stored is not None:
            if stored.body_sha256 != digest:
                raise _conflict(key, idempotency_key is not None)
            log.info("replaying the stored answer for %s key %s", recommender, key)
            return _replay(stored.status_code, stored.response)

        client = await self.client()
        try:
            submission = await submit(
                client,
                proposal,
                self.settings.task_queue,
                policy,
                channel=channel,
                claims_namespace=self.settings.claims_namespace,
            )
            if submission.duplicate_of is not None:
                # Read while attaching: no second describe of the owner per duplicate.
                status = submission.duplicate_status or ProposalStatus.SUBMITTED
            elif submission.created:
                status = ProposalStatus.SUBMITTED
            else:
                status = await self._status_of(client, proposal.proposal_id)
            answer = SubmitAnswer(
                proposal_id=submission.proposal_id,
                status=status,
                created=submission.created,
                duplicate_of=submission.duplicate_of,
                trace_id=current_trace_id(),
            )
        except ProposalConflict as exc:
            raise ApiError(409, str(exc), [f"proposal_id: {exc}"]) from None
        except DedupUnsettled as exc:
            raise ApiError(
                503,
                "the proposal's problem is changing hands; retry",
                [str(exc)],
                headers={"Retry-After": _RETRY_AFTER_UNAVAILABLE},
            ) from None
        except RPCError as exc:
            raise self.rpc_error(exc) or exc from None
        span.set_attribute("interlock.created", answer.created)
        if answer.duplicate_of:
            span.set_attribute("interlock.duplicate_of", answer.duplicate_of)
        status_code = 201 if answer.created else 202 if answer.duplicate_of else 200
        log.info(
            "proposal %s from %s: %s",
            proposal.proposal_id,
            recommender,
            "started"
            if answer.created
            else f"attached to {answer.duplicate_of}"
            if answer.duplicate_of
            else "already known",
        )
        response = answer.model_dump(mode="json")
        first = await asyncio.to_thread(self.answers.put, recommender, key, digest, status_code, response)
        if first.body_sha256 != digest:
            # A concurrent request used the key for another proposal and was stored first.
            # Both workflows run (Temporal dedups by proposal_id, not by key): only the
            # answer can still follow the key's rule.
            raise _conflict(key, idempotency_key is not None)
        if first.response != response:
            # A concurrent request with the same key answered first: give the same answer.
            return _replay(first.status_code, first.response)
        return JSONResponse(response, status_code=status_code)

    async def _status_of(self, client: Client, proposal_id: str) -> ProposalStatus:
        """The status search attribute: unlike a query, it needs no worker to answer."""
        try:
            desc = await client.get_workflow_handle(proposal_id).describe()
            value = desc.typed_search_attributes.get(search.SA_STATUS)
            return ProposalStatus(value) if value else ProposalStatus.SUBMITTED
        except (RPCError, ValueError) as exc:
            log.debug("no status attribute for %s: %s", proposal_id, exc)
            return ProposalStatus.SUBMITTED


def _valid_key(key: str) -> bool:
    return 1 <= len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def _replay(status_code: int, response: dict[str, Any]) -> JSONResponse:
    return JSONResponse(response, status_code=status_code, headers={"Idempotent-Replayed": "true"})


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413, "the request body is too large", [f"body: {size} bytes exceeds the limit of {limit}"]
    )


def _impersonation(recommender: str, claimed: str) -> ApiError:
    return ApiError(
        403,
        f"this token speaks for recommender {recommender!r}, not {claimed!r}",
        [f"recommender: {claimed!r} does not match the token's recommender {recommender!r}"],
    )


def _conflict(key: str, from_header: bool) -> ApiError:
    what = f"Idempotency-Key {key!r}" if from_header else f"proposal_id {key!r}"
    return ApiError(
        409,
        f"{what} was already used with a different proposal",
        [f"{'Idempotency-Key' if from_header else 'proposal_id'}: already used with another body"],
    )

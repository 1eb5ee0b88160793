"""The HTTP intake's FastAPI app: recommenders submit and read proposals (also through MCP at
`/mcp`); nobody decides here.

There is deliberately no route that approves, rejects or pauses: a recommender's token must
never be able to move its own proposal past the approval gate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from starlette.routing import Route

from interlock.api import reading
from interlock.api.connection import ClientFactory
from interlock.api.errors import ErrorBody, install_error_handlers, unauthorized
from interlock.api.intake import Intake
from interlock.api.responses import Health, ProposalList, ProposalView, SubmitAnswer
from interlock.api.settings import ApiSettings
from interlock.api.tracing import TracingMiddleware
from interlock.client import SDK_USER_AGENT
from interlock.examples import example_proposal
from interlock.models import Channel, Proposal, ProposalStatus
from interlock.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A recommender token from `interlock tokens create RECOMMENDER`.",
)


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(_intake)]


async def _recommender(
    request: Request,
    intake: IntakeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The recommender the bearer token speaks for; the token, not the body, says who calls."""
    if credentials is None:
        raise unauthorized("a bearer token is required")
    # The peer as uvicorn reports it (X-Forwarded-For only from the proxies it trusts).
    address = request.client.host if request.client else "unknown"
    recommender = await intake.authenticate(credentials.credentials, address)
    if recommender is None:
        raise unauthorized("the token is unknown or revoked")
    return recommender


Recommender = Annotated[str, Depends(_recommender)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "No, unknown or revoked bearer token.",
        403: "The token speaks for another recommender.",
        404: "No such proposal.",
        409: "The idempotency key (or proposal_id) was used with a different proposal.",
        413: "The body is larger than the intake accepts.",
        422: "Invalid input: one 'field: reason' line per problem in `details`.",
        429: (
            "Too many proposals from this recommender, or too many failed authentications "
            "from this address; see Retry-After (seconds)."
        ),
        503: "Temporal cannot be reached; nothing was started. See Retry-After.",
    }
    retry_after = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
    headers = {
        401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
        429: {"Retry-After": retry_after},
        503: {"Retry-After": retry_after},
    }
    return {
        code: {"model": ErrorBody, "description": described[code]}
        | ({"headers": headers[code]} if code in headers else {})
        for code in codes
    }


_EXAMPLE = example_proposal("restart_service", proposal_id="prop-0001", recommender="triage-bot")


async def submit_proposal(
    request: Request,
    intake: IntakeDep,
    recommender: Recommender,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retries with the same key get the first answer; defaults to proposal_id.",
        ),
    ] = None,
) -> JSONResponse:
    """Validate the proposal exactly as `interlock propose` does and start its workflow."""
    # Cheap refusals first: the declared size, then the rate, then reading the body.
    intake.check_declared_size(request)
    intake.check_rate(recommender)
    body = await intake.read_body(request)
    return await intake.submit(recommender, body, idempotency_key, _channel(request))


def _channel(request: Request) -> Channel:
    # The SDK names itself in its User-Agent: a label for the audit trail, not a credential.
    agent = request.headers.get("user-agent", "")
    return Channel.SDK if agent.split("/")[0] == SDK_USER_AGENT.split("/")[0] else Channel.HTTP


async def read_proposal(proposal_id: str, intake: IntakeDep, recommender: Recommender) -> ProposalView:
    """Status, risk, decisions and reasons of a proposal this recommender submitted."""
    return await reading.read_proposal(intake, recommender, proposal_id)


async def list_proposals(
    intake: IntakeDep,
    recommender: Recommender,
    status: Annotated[ProposalStatus | None, Query(description="Only this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ProposalList:
    """This recommender's proposals, newest first."""
    return await reading.list_proposals(intake, recommender, status, limit)


async def healthz() -> Health:
    return Health()


def _add_routes(app: FastAPI) -> None:
    # Read and submit only: see the module docstring.
    app.add_api_route(
        "/v1/proposals",
        submit_proposal,
        methods=["POST"],
        status_code=201,
        response_model=SubmitAnswer,
        summary="Submit a proposal",
        responses={
            200: {"model": SubmitAnswer, "description": "Already submitted (same proposal)."},
            202: {
                "model": SubmitAnswer,
                "description": (
                    "Attached as a duplicate to the open proposal in `duplicate_of` (same problem "
                    "by the policy's dedup key): no workflow of its own, no second approval."
                ),
            },
            201: {
                "description": "A new proposal; its workflow has started.",
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "'true' when this is the stored answer to an earlier try.",
                        "schema": {"type": "string"},
                    }
                },
            },
            **_errors(401, 403, 409, 413, 422, 429, 503),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Proposal"},
                        "example": _EXAMPLE,
                    }
                },
            },
        },
    )
    app.add_api_route(
        "/v1/proposals/{proposal_id}",
        read_proposal,
        methods=["GET"],
        response_model=ProposalView,
        summary="Read one of your proposals",
        responses=_errors(401, 403, 404, 422, 429, 503),
    )
    app.add_api_route(
        "/v1/proposals",
        list_proposals,
        methods=["GET"],
        response_model=ProposalList,
        summary="List your proposals",
        responses=_errors(401, 422, 429, 503),
    )
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health, summary="Liveness")


def create_app(
    settings: Settings,
    client_factory: ClientFactory | None = None,
    *,
    api_settings: ApiSettings | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The intake app; `client_factory` defaults to a lazy connection retried after failures."""
    api_settings = api_settings or ApiSettings()
    # Here, not at the top: the MCP SDK takes a good part of a second to import, and every
    # `interlock` command imports this module.
    from interlock.mcp.http import MCP_PATH, McpEndpoint

    intake = Intake(settings, api_settings, client_factory)
    mcp = McpEndpoint(intake)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with mcp.running():
            yield
        intake.engine.dispose()

    app = FastAPI(
        title="Interlock intake",
        version="1.0",
        description=(
            "Where AI recommenders submit remediation proposals. Every proposal is validated "
            "against the policy in force and then waits for a person: nothing here approves."
        ),
        lifespan=lifespan,
        # A redirect is no answer for a machine client: unknown paths are plain 404s.
        redirect_slashes=False,
    )
    app.state.intake = intake
    install_error_handlers(app)
    app.add_middleware(
        TracingMiddleware, tracer=trace.get_tracer("interlock.api", tracer_provider=tracer_provider)
    )
    _add_routes(app)
    # MCP for AI agents: the same tokens, the same submit path, and no decision either.
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp.app, include_in_schema=False))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _openapi_schema(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    # The body is read raw (to validate it with parse_proposal), so FastAPI does not know
    # its model: add the Proposal schema, and what it refers to, by hand.
    proposal = Proposal.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(proposal.pop("$defs", {}))
    proposal["examples"] = [_EXAMPLE]
    components["Proposal"] = proposal
    return schema

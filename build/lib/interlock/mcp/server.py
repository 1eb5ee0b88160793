"""The Interlock MCP server: the intake's submit and read paths as tools for AI agents.

Who calls comes from a recommender token (the bearer token of each HTTP request, or the token
`interlock mcp` was started with over stdio), never from a tool argument. There is no tool, and
no code path here, that approves, rejects, pauses or resumes a proposal.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import metadata
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError
from temporalio.service import RPCError

from interlock.api import reading
from interlock.api.errors import ApiError
from interlock.api.intake import Intake
from interlock.api.responses import ProposalView, SubmitAnswer
from interlock.mcp.catalog import catalog_for, inventory_hosts
from interlock.mcp.tools import (
    ARGUMENTS,
    INSTRUCTIONS,
    GetProposalArguments,
    ListArguments,
    ToolName,
    WaitArguments,
    tool_list,
)
from interlock.mcp.views import MyProposals, ProposalDetail, ProposeResult, WaitResult
from interlock.models import Channel, ProposalState
from interlock.policy import format_validation_errors
from interlock.proposals import ProposalNotFound, get_state, parse_proposal

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("interlock")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


class InterlockMcp:
    """The tools' handlers over one intake. `token` is the stdio caller's; over HTTP each request
    brings its own, checked by the bearer middleware before anything here runs."""

    def __init__(self, intake: Intake, token: str | None = None, *, poll_interval: float = 1.0):
        self.intake = intake
        self._token = token
        self.poll_interval = poll_interval
        self._tools = tool_list()

    def server(self) -> Server[Any]:
        return Server(
            "interlock",
            version=_version(),
            title="Interlock",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    # --- protocol handlers ----------------------------------------------------------------

    async def _list_tools(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            name = ToolName(params.name)
        except ValueError:
            known = ", ".join(t.value for t in ToolName)
            raise MCPError(
                types.INVALID_PARAMS, f"unknown tool {params.name!r}; the tools are {known}"
            ) from None
        arguments = params.arguments or {}
        try:
            recommender = await self._caller(ctx)
            log.info("mcp %s by %s", name.value, recommender)
            result = await self._run(name, recommender, arguments, ctx)
        except ApiError as exc:
            return _error(exc.status_code, exc.error, exc.details)
        except ValidationError as exc:
            return _error(422, "the arguments are invalid", format_validation_errors(exc))
        except RPCError as exc:
            unavailable = self.intake.rpc_error(exc)
            if unavailable is None:
                log.exception("mcp %s failed", name.value)
                return _error(500, "internal error")
            return _error(unavailable.status_code, unavailable.error, unavailable.details)
        data = result.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(data))], structured_content=data
        )

    async def _caller(self, ctx: ServerRequestContext[Any]) -> str:
        """The recommender the call speaks for: from the token, never from the arguments."""
        request = ctx.request
        if request is not None:
            user = request.scope.get("user")
            if isinstance(user, AuthenticatedUser):
                return user.access_token.client_id
            raise ApiError(401, "a bearer token is required")
        if self._token is None:
            raise ApiError(401, "no recommender token: start `interlock mcp` with INTERLOCK_TOKEN set")
        recommender = await self.intake.authenticate(self._token, "stdio")
        if recommender is None:
            raise ApiError(401, "the token is unknown or revoked")
        return recommender

    async def _run(
        self, name: ToolName, recommender: str, arguments: dict[str, Any], ctx: ServerRequestContext[Any]
    ) -> BaseModel:
        if name is ToolName.PROPOSE_REMEDIATION:
            return await self.propose(recommender, arguments)
        parsed = ARGUMENTS[name].model_validate(arguments)
        if isinstance(parsed, GetProposalArguments):
            return await self.detail(recommender, parsed.proposal_id)
        if isinstance(parsed, WaitArguments):
            return await self.wait(recommender, parsed, ctx)
        if isinstance(parsed, ListArguments):
            listed = await reading.list_proposals(self.intake, recommender, parsed.status, parsed.limit)
            return MyProposals(proposals=listed.proposals)
        inventory = self.intake.settings.playbooks_dir / "inventory" / "hosts.yml"
        return catalog_for(
            self.intake.policy(), recommender, await asyncio.to_thread(inventory_hosts, inventory)
        )

    # --- the tools --------------------------------------------------------------------------

    async def propose(self, recommender: str, arguments: dict[str, Any]) -> ProposeResult:
        """The intake's own submit path (validation, dedup, idempotency), with the channel `mcp`."""
        document = dict(arguments)
        # Absent from the tool's schema; when an agent sends it anyway, the intake refuses any
        # name other than the token's.
        document.setdefault("recommender", recommender)
        body = json.dumps(document).encode()
        limit = self.intake.api_settings.max_body
        if len(body) > limit:
            raise ApiError(
                413, "the proposal is too large", [f"body: {len(body)} bytes exceeds the limit of {limit}"]
            )
        self.intake.check_rate(recommender)
        response = await self.intake.submit(recommender, body, None, Channel.MCP)
        answer = SubmitAnswer.model_validate_json(bytes(response.body))
        if violations := self._scope_violations(body):
            # The intake takes such a proposal and its checks refuse it with a security event in
            # the audit trail; an agent hears it now, naming what is outside its scope.
            raise ApiError(
                403,
                f"outside this recommender's scope: proposal {answer.proposal_id} is refused by its "
                "checks (rejected_by_checks) and recorded as a security event",
                violations,
            )
        return ProposeResult.of(answer, replayed=response.headers.get("Idempotent-Replayed") == "true")

    def _scope_violations(self, body: bytes) -> list[str]:
        policy = self.intake.policy()
        proposal = parse_proposal(body, policy)  # the intake just accepted it
        return policy.scope_violations(
            proposal, policy.canonical_service(proposal.target.service) or proposal.target.service
        )

    async def detail(self, recommender: str, proposal_id: str) -> ProposalDetail:
        # read_proposal decides whether this recommender may see it (and answers 404 / 403).
        view = await reading.read_proposal(self.intake, recommender, proposal_id)
        state = await self._state(proposal_id)
        return ProposalDetail.of(ProposalView.of(state) if state else view, state)

    async def _state(self, proposal_id: str) -> ProposalState | None:
        """The workflow's whole state, or None when no worker answers in time."""
        client = await self.intake.client()
        try:
            return await asyncio.wait_for(get_state(client, proposal_id), reading.QUERY_TIMEOUT_SECONDS)
        except (TimeoutError, RPCError, ProposalNotFound) as exc:
            log.debug("no state for %s: %s", proposal_id, exc)
            return None

    async def wait(self, recommender: str, args: WaitArguments, ctx: ServerRequestContext[Any]) -> WaitResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        detail = await self.detail(recommender, args.proposal_id)
        initial = detail.status

        def done(d: ProposalDetail) -> bool:
            return d.final or (args.until == "change" and d.status != initial)

        timed_out = False
        while not done(detail):
            elapsed = loop.time() - start
            if elapsed >= args.timeout_seconds:
                timed_out = True
                break
            await ctx.session.report_progress(elapsed, args.timeout_seconds, _progress_message(detail))
            await asyncio.sleep(min(self.poll_interval, args.timeout_seconds - elapsed))
            detail = await self.detail(recommender, args.proposal_id)
        return WaitResult(
            proposal=detail,
            started_as=initial,
            changed=detail.status != initial,
            timed_out=timed_out,
            waited_seconds=round(loop.time() - start, 3),
            until=args.until,
        )


def _progress_message(detail: ProposalDetail) -> str:
    if detail.waiting_for:
        return f"{detail.status.value}: waiting for {detail.waiting_for}"
    return detail.status.value


def _error(status_code: int, error: str, details: list[str] | None = None) -> types.CallToolResult:
    """A refusal the model can read and correct: the reason, then one 'field: reason' per line."""
    details = details or []
    text = "\n".join([f"refused ({status_code}): {error}", *details])
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={"status_code": status_code, "error": error, "details": details},
        is_error=True,
    )

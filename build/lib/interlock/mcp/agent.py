"""A recommender acting through MCP: the official MCP client on the intake's `/mcp` endpoint.

`McpRecommenderClient` offers the SDK client's `propose` and `get`, so `interlock demo --mcp`
runs the same demo recommender over MCP instead of the HTTP intake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from interlock.client import (
    AuthError,
    IdempotencyConflict,
    IntakeError,
    IntakeUnavailable,
    ProposalRefused,
    SubmitResult,
)
from interlock.mcp import MCP_PATH
from interlock.models import Proposal

# The MCP transports' own defaults: a response stream may stay open while a tool waits.
_TIMEOUT = httpx2.Timeout(30.0, read=300.0)


@asynccontextmanager
async def connect_http(url: str, token: str) -> AsyncIterator[Client]:
    """An MCP client session on `url` (the intake's base URL, or its `/mcp` endpoint)."""
    endpoint = url.rstrip("/")
    if not endpoint.endswith(MCP_PATH):
        endpoint += MCP_PATH
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=_TIMEOUT) as http,
        Client(streamable_http_client(endpoint, http_client=http)) as client,
    ):
        yield client


def refusal(result: types.CallToolResult) -> IntakeError:
    """A tool error as the SDK client's exception for the same HTTP refusal."""
    data = result.structured_content if isinstance(result.structured_content, dict) else {}
    code = int(data.get("status_code", 0))
    error = str(data.get("error") or _text(result))
    kind: type[IntakeError] = {
        401: AuthError,
        403: AuthError,
        409: IdempotencyConflict,
        422: ProposalRefused,
        429: IntakeUnavailable,
        503: IntakeUnavailable,
    }.get(code, IntakeError)
    return kind(code, error, [str(d) for d in data.get("details", [])])


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


class McpRecommenderClient:
    """A synchronous facade over an MCP session (run in a background event loop)."""

    def __init__(self, url: str, token: str):
        self.url = url
        self._token = token
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._session: AbstractContextManager[Client] | None = None
        self._client: Client | None = None

    def __enter__(self) -> McpRecommenderClient:
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        # Entered and left in one task of the portal's loop, as anyio's cancel scopes require.
        self._session = self._portal.wrap_async_context_manager(connect_http(self.url, self._token))
        try:
            self._client = self._session.__enter__()
        except Exception as exc:
            self._portal_cm.__exit__(None, None, None)
            raise IntakeUnavailable(
                0, f"cannot open an MCP session on {self.url} (is the intake up, the token valid?): {exc!r}"
            ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._portal_cm is not None and self._session is not None
        try:
            self._session.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        assert self._portal is not None and self._client is not None, "use as a context manager"
        result = self._portal.call(self._client.call_tool, tool, arguments)
        if result.is_error:
            raise refusal(result)
        data = result.structured_content
        return data if isinstance(data, dict) else json.loads(_text(result))

    def propose(self, proposal: Proposal) -> SubmitResult:
        document = proposal.model_dump(mode="json")
        # The token says who proposes; the tool takes no `recommender`.
        document.pop("recommender", None)
        return SubmitResult.model_validate(self.call("propose_remediation", document))

    def get(self, proposal_id: str) -> dict[str, Any]:
        return self.call("get_proposal", {"proposal_id": proposal_id})

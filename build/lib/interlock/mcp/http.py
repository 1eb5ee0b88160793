"""The MCP server over streamable HTTP, mounted beside the intake at `/mcp` with its bearer tokens.

The SDK's bearer middleware checks every request against the intake's token store, and an MCP
session answers only the recommender that opened it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from interlock.api.intake import Intake
from interlock.mcp import MCP_PATH
from interlock.mcp.server import InterlockMcp
from interlock.tokens import hash_token

__all__ = ["MCP_PATH", "McpEndpoint", "RecommenderTokens"]
# Room for the JSON-RPC envelope around a proposal of the intake's largest accepted size.
_ENVELOPE_BYTES = 16 * 1024


# The peer of the request being authenticated: the SDK's TokenVerifier is given only the token,
# and failed authentications are rate-limited per address, as on the intake.
_peer: ContextVar[str] = ContextVar("mcp_peer", default="unknown")


class _RecordPeer:
    """ASGI middleware: remember the peer's address for RecommenderTokens."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        _peer.set(client[0] if client else "unknown")
        await self.app(scope, receive, send)


class RecommenderTokens:
    """The SDK's TokenVerifier over the intake's recommender tokens."""

    def __init__(self, intake: Intake):
        self.intake = intake

    async def verify_token(self, token: str) -> AccessToken | None:
        recommender = await self.intake.authenticate(token, _peer.get())
        if recommender is None:
            return None
        # The session's owner is the recommender (client_id); the token itself is not kept.
        return AccessToken(token=hash_token(token), client_id=recommender, subject=recommender, scopes=[])


class McpEndpoint:
    """An ASGI app for `/mcp` and the session manager the app's lifespan must run."""

    def __init__(self, intake: Intake):
        self.manager = StreamableHTTPSessionManager(
            app=InterlockMcp(intake).server(),
            max_request_body_size=intake.api_settings.max_body + _ENVELOPE_BYTES,
            # No DNS-rebinding Host check: the intake runs behind names we cannot list, and a
            # browser tricked into calling it has no bearer token to send.
            security_settings=None,
        )
        self.app: ASGIApp = _RecordPeer(
            AuthenticationMiddleware(
                AuthContextMiddleware(RequireAuthMiddleware(StreamableHTTPASGIApp(self.manager), [])),
                backend=BearerAuthBackend(RecommenderTokens(intake)),
            )
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

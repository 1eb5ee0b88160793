"""`interlock mcp`: serve the MCP tools over stdio for a local agent, or over streamable HTTP.

Over stdio, stdout carries the protocol: everything for people goes to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from enum import StrEnum
from typing import Annotated

import typer

from interlock.mcp import MCP_PATH
from interlock.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


class McpStartError(RuntimeError):
    pass


async def serve_stdio(settings: Settings, token: str) -> None:
    """Serve one agent on stdin/stdout until it closes them."""
    from mcp.server.stdio import stdio_server

    from interlock.api.intake import Intake
    from interlock.api.settings import ApiSettings
    from interlock.mcp.server import InterlockMcp

    intake = Intake(settings, ApiSettings())
    try:
        recommender = await intake.authenticate(token, "stdio")
        if recommender is None:
            raise McpStartError("INTERLOCK_TOKEN is unknown or revoked (interlock tokens create NAME)")
        log.info("MCP over stdio for recommender %s", recommender)
        server = InterlockMcp(intake, token).server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        intake.engine.dispose()


def mcp_command(
    transport: Annotated[
        Transport,
        typer.Option("--transport", help="stdio for a local agent; http serves /mcp with the intake."),
    ] = Transport.STDIO,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="INTERLOCK_TOKEN",
            help="The recommender token (stdio; prefer the INTERLOCK_TOKEN variable to the flag).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--api-port", help="http: port of the intake (default INTERLOCK_API_PORT).")
    ] = None,
) -> None:
    """An MCP server for AI agents: list actions, propose, follow. Nothing here approves."""
    if transport is Transport.HTTP:
        from interlock.api.server import api_command

        typer.echo(
            f"MCP over streamable HTTP at {MCP_PATH} on the intake (bearer: a recommender token)", err=True
        )
        api_command(port)
        return
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not token:
        typer.echo(
            "error: no recommender token: set INTERLOCK_TOKEN (interlock tokens create NAME)", err=True
        )
        raise typer.Exit(2)
    # stdout is the protocol channel.
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        asyncio.run(serve_stdio(settings, token))
    except McpStartError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass

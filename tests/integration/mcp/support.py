"""What the MCP tests share: a scoped policy, MCP client sessions over both transports, and
reading a tool's answer."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent

from interlock.mcp.agent import connect_http
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.integration.api.support import RunningApi

# Recommenders of the scoped policy: `narrow-agent` may restart checkout-api only, `wide-agent`
# may restart or roll back anything in the lab, `unscoped-agent` is not listed (so it may do nothing).
SCOPES: dict[str, Any] = {
    "narrow-agent": {
        "actions": ["restart_service"],
        "services": ["checkout-api"],
        "environments": ["lab"],
        "max_tier": "medium",
    },
    "wide-agent": {"actions": ["restart_service", "rollback_deployment"], "environments": ["lab"]},
}


def write_scoped_policy(session_settings: Settings, home: Path) -> None:
    """The session's (dev-keyed) policy with recommender scopes, as the intake's policy."""
    doc = yaml.safe_load((session_settings.home_dir / "policy.yaml").read_text())
    doc["recommenders"] = SCOPES
    home.mkdir(parents=True, exist_ok=True)
    (home / "policy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@asynccontextmanager
async def http_session(api: RunningApi, recommender: str) -> AsyncIterator[Client]:
    async with connect_http(api.url, api.token(recommender)) as client:
        yield client


@asynccontextmanager
async def stdio_session(api: RunningApi, recommender: str) -> AsyncIterator[Client]:
    """`interlock mcp` as a subprocess, as an agent's config starts it."""
    env = cli_env(api.settings, api.settings.task_queue) | {"INTERLOCK_TOKEN": api.token(recommender)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "interlock.cli", "mcp"], env=env)
    async with Client(params) as client:
        yield client


def answer(result: CallToolResult) -> dict[str, Any]:
    """A successful tool result's structured content (the same JSON as its text)."""
    assert not result.is_error, text(result)
    assert isinstance(result.structured_content, dict)
    assert json.loads(text(result)) == result.structured_content
    return result.structured_content


def text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))

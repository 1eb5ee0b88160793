"""Fixtures for the MCP tests: the real intake (with `/mcp`) under a policy with recommender scopes.

`mcp_api` has no worker (workflows start but stay `submitted`); `mcp_worker_api` has one and a
degraded lab, so proposals are checked at their sources and wait for a person.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from interlock.lab import Lab
from interlock.settings import Settings
from tests.integration.api.support import RunningApi, intake_settings, running_api
from tests.integration.mcp.support import write_scoped_policy


@pytest_asyncio.fixture
async def api(settings: Settings, task_queue: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The intake under the default policy (no scopes), as the demo runs against it."""
    async with running_api(intake_settings(settings, tmp_path / "home", task_queue)) as running:
        yield running


@pytest_asyncio.fixture
async def mcp_api(settings: Settings, task_queue: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    write_scoped_policy(settings, tmp_path / "home")
    async with running_api(intake_settings(settings, tmp_path / "home", task_queue)) as running:
        yield running


@pytest_asyncio.fixture
async def mcp_worker_api(
    settings: Settings, worker: str, tmp_path: Path, alerting_lab: Lab
) -> AsyncIterator[RunningApi]:
    write_scoped_policy(settings, tmp_path / "home")
    # The roster's keys, so `interlock approve --as alice` signs its approval.
    shutil.copytree(settings.keys_dir, tmp_path / "home" / "keys")
    async with running_api(intake_settings(settings, tmp_path / "home", worker)) as running:
        yield running


# The audit store on SQLite and on the real PostgreSQL, as the audit tests have it.
from tests.integration.audit.conftest import backend, head_file, pg_schema, store  # noqa: E402, F401

"""Fixtures for the intake tests: a real uvicorn server in front of the session's Temporal.

`api` has no worker on its task queue: its workflows start (proven with `describe`) but no
Ansible preview runs, which keeps these tests fast. `worker_api` has one, for tests that read
a proposal's status as the workflow sets it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from interlock.lab import Lab
from interlock.settings import Settings
from tests.integration.api.support import RunningApi, intake_settings, running_api


@pytest_asyncio.fixture
async def api(settings: Settings, task_queue: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_api(intake_settings(settings, tmp_path / "home", task_queue)) as running:
        yield running


@pytest_asyncio.fixture
async def worker_api(
    settings: Settings, worker: str, tmp_path: Path, checkout_degraded: Lab
) -> AsyncIterator[RunningApi]:
    async with running_api(intake_settings(settings, tmp_path / "home", worker)) as running:
        yield running

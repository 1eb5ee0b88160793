"""Durability drills: fixtures for a Temporal dev server each drill owns and can SIGKILL.

The session dev server in tests/conftest.py is shared and in memory; a drill needs its own, on
SQLite (`--db-filename`), so that a killed server comes back with its state on the same port.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from bench.stack import DevServer, make_settings
from interlock.lab import Lab
from interlock.settings import Settings

# How many proposals wait for approval during a kill drill; bench runs the drills larger.
PROPOSALS = int(os.environ.get("INTERLOCK_DRILL_PROPOSALS", "12"))
# How many of them are approved, so their playbooks run when the kill comes.
RUNNING = int(os.environ.get("INTERLOCK_DRILL_RUNNING", "5"))


@pytest.fixture
def drill_server(tmp_path: Path) -> Iterator[DevServer]:
    server = DevServer(tmp_path / "temporal", db_file=tmp_path / "temporal.db")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def drill_client(drill_server: DevServer) -> AsyncIterator[Client]:
    yield await drill_server.client()


# Every service the default policy knows in the lab. With more running than services, two
# restarts of one service run at once: the lab's service manager takes them one at a time.
SERVICES = ["checkout-api", "inventory-api", "storefront", "mobile-bff"]


@pytest.fixture
def drill_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path / "lab")
    lab.create(services=dict.fromkeys(SERVICES, 0))
    lab.start()
    # An incident on every service, so each restart proposal's evidence is confirmed at its
    # source (the lab's health endpoint and alerts), as in production.
    for service in SERVICES:
        lab.degrade(service)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def drill_settings(tmp_path: Path, drill_lab: Lab, drill_server: DevServer) -> Settings:
    return make_settings(tmp_path / "home", drill_lab.root, drill_server.address)

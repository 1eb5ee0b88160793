"""Helpers for the audit tests that run real proposals: a state folder per test, waits, the CLI."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from interlock.audit import open_store
from interlock.settings import Settings
from tests.integration.audit.conftest import Backend


def audit_settings(
    settings: Settings, home: Path, backend: Backend, policy: dict[str, Any] | None = None
) -> Settings:
    """The session's settings with a state folder and audit store of the test's own.

    The policy and dev keys are the session's (so `signed` works), optionally with changes.
    """
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(settings.keys_dir, home / "keys")
    doc = yaml.safe_load((settings.home_dir / "policy.yaml").read_text())
    for key, value in (policy or {}).items():
        doc[key] = value
    (home / "policy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return Settings(
        home=home,
        lab_root=settings.lab_dir,
        temporal_address=settings.temporal_address,
        database_url=backend.url if backend.name == "postgresql" else None,
        max_concurrent_playbooks=2,
    )


def stored_kinds(settings: Settings, proposal_id: str) -> list[str]:
    with open_store(settings) as store:
        return [e.kind for e in store.timeline(proposal_id)]


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 60, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.2)


def cli_environment(settings: Settings, task_queue: str | None = None) -> dict[str, str | None]:
    url = settings.database_url.get_secret_value() if settings.database_url else None
    return {
        "INTERLOCK_HOME": str(settings.home_dir),
        "INTERLOCK_DATABASE_URL": url,
        "INTERLOCK_LAB_ROOT": str(settings.lab_dir),
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "INTERLOCK_TASK_QUEUE": task_queue,
        "COLUMNS": "250",
    }


async def interlock(settings: Settings, *args: str) -> tuple[int, str]:
    """Run an `interlock` command in-process (in a thread: the commands run their own loop)."""
    from interlock.cli import app

    def invoke() -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args), env=cli_environment(settings))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return await asyncio.to_thread(invoke)

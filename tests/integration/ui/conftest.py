"""The real Temporal Web UI (the dev server's, 2.54) in a real headless Chromium.

Debian's `chromium` driven by the Python `playwright` package with `executable_path`: never
`playwright install`, which downloads a browser. Without either, CI fails and a laptop skips.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from interlock import search
from interlock.dedup import claims_namespace
from interlock.keys import ensure_dev_keys
from interlock.lab import Lab
from interlock.policy import default_policy_text
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER
from tests.conftest import temporal_cli
from tests.integration.api.support import free_port
from worker.main import build_worker

CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no sandbox (root in a container), no calls home, no first-run screens.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UI_TASK_QUEUE = "ui-test"


def _missing(why: str) -> None:
    why += " (apt-get install -y --no-install-recommends chromium; pip install '.[test]')"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        _missing("chromium is not installed")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed")
    return str(path)


@pytest_asyncio.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A dev server of its own with the Web UI on (the session's server runs headless)."""
    ui_port = free_port()
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search.ALL,
        data_converter=DATA_CONVERTER,
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--namespace", claims_namespace("default")],
    ) as env:
        yield env, f"http://127.0.0.1:{ui_port}"


@pytest.fixture(scope="module")
def ui_settings(
    tmp_path_factory: pytest.TempPathFactory, lab: Lab, ui_env: tuple[WorkflowEnvironment, str]
) -> Settings:
    home = tmp_path_factory.mktemp("ui-home")
    (home / "policy.yaml").write_text(default_policy_text())
    ensure_dev_keys(home / "policy.yaml", home / "keys")
    return Settings(
        home=home,
        lab_root=lab.root,
        temporal_address=ui_env[0].client.service_client.config.target_host,
        task_queue=UI_TASK_QUEUE,
        policy_file=None,
    )


@pytest_asyncio.fixture(scope="module")
async def ui_worker(ui_env: tuple[WorkflowEnvironment, str], ui_settings: Settings) -> AsyncIterator[str]:
    async with build_worker(ui_env[0].client, ui_settings, UI_TASK_QUEUE):
        yield UI_TASK_QUEUE


@pytest_asyncio.fixture(scope="module")
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the test leaves its screenshots: INTERLOCK_SCREENSHOTS (e.g. docs/screenshots) or tmp."""
    folder = Path(os.environ.get("INTERLOCK_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder

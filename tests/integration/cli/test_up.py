"""`interlock up`: `--no-lab` runs on a team's own policy and playbooks with no lab at all, and a
port that is already taken is named, with what holds it, before anything starts (exit 1)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interlock.cli import app
from interlock.policy import default_policy_text
from tests.integration.api.support import free_port
from tests.integration.api.test_up import read_until
from tests.integration.playbooks.support import PLAYBOOKS

pytestmark = pytest.mark.timeout(240)


def up_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "INTERLOCK_HOME": str(home), "INTERLOCK_LOG_LEVEL": "WARNING", **extra}
    for name in ("INTERLOCK_LAB_ROOT", "TEMPORAL_ADDRESS", "INTERLOCK_POLICY", "INTERLOCK_PLAYBOOKS"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.parametrize(
    ("given", "named"),
    [((), "INTERLOCK_POLICY and INTERLOCK_PLAYBOOKS"), (("INTERLOCK_POLICY",), "set INTERLOCK_PLAYBOOKS")],
)
def test_no_lab_without_a_policy_and_playbooks_of_ones_own_is_one_line_and_exit_2(
    tmp_path: Path, given: tuple[str, ...], named: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_text())
    env = up_env(tmp_path / "home", **{name: str(policy) for name in given})

    result = CliRunner().invoke(app, ["up", "--no-lab"], env=env)

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
    assert not (tmp_path / "home").exists()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A real socket listening on a port of this machine, held by this test's own process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--port", "Temporal frontend, --port"),
        ("--ui-port", "Temporal Web UI, --ui-port"),
        ("--api-port", "intake API"),
        ("--metrics-port", "/metrics"),
    ],
)
async def test_a_taken_port_is_named_with_its_holder_before_anything_starts(
    tmp_path: Path, listener: socket.socket, option: str, what: str
) -> None:
    taken = listener.getsockname()[1]
    ports = {
        "--port": free_port(),
        "--ui-port": free_port(),
        "--api-port": free_port(),
        "--metrics-port": free_port(),
    }
    ports[option] = taken
    home = tmp_path / "home"
    args = [a for option_, port in ports.items() for a in (option_, str(port))]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock.cli",
        "up",
        *args,
        env=up_env(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)

    assert proc.returncode == 1, stderr.decode()
    line = stderr.decode()
    assert line.count("\n") == 1, line
    assert f"port {taken} ({what}" in line and f"in use by pid {os.getpid()} (" in line, line
    assert b"Interlock is up" not in stdout and b"starting Temporal" not in stdout
    # Nothing started: no dev server database or log, no lab.
    assert not (home / "temporal.log").exists() and not (home / "temporal.db").exists()
    assert not (home / "lab").exists()


async def test_no_lab_starts_the_stack_on_ones_own_policy_and_playbooks_without_a_lab(tmp_path: Path) -> None:
    home = tmp_path / "home"
    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_text())
    playbooks = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS / "systemd", playbooks)
    port, ui_port, api_port = free_port(), free_port(), free_port()
    env = up_env(
        home,
        INTERLOCK_POLICY=str(policy),
        INTERLOCK_PLAYBOOKS=str(playbooks),
        INTERLOCK_TASK_QUEUE="no-lab-test",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock.cli",
        "up",
        "--no-lab",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--api-port",
        str(api_port),
        "--metrics-port",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = await read_until(proc.stdout, "Ctrl-C stops everything", timeout=180)
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, rest.decode()
    assert f"Playbooks       {playbooks}" in banner and f"Policy          {policy}" in banner
    assert "interlock example restart_service --id prop-0001 | interlock propose -" in banner
    assert "interlock lab" not in banner and "\n  Lab " not in banner and "break it" not in banner, banner
    assert not (home / "lab").exists()

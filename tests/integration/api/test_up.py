"""`interlock up` serves the intake: the real command, its banner, a proposal, then Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from interlock.tokens import TokenStore, intake_db_path
from tests.integration.api.support import free_port, proposal_doc


async def read_until(stream: asyncio.StreamReader, marker: str, timeout: float) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while marker not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"output ended before {marker!r}:\n{seen}")
            seen += line.decode()
    return seen


async def test_up_serves_the_intake_on_its_api_port_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port, ui_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "INTERLOCK_HOME": str(home),
        "INTERLOCK_TASK_QUEUE": "up-test",
        "INTERLOCK_LOG_LEVEL": "WARNING",
    }
    env.pop("INTERLOCK_LAB_ROOT", None)
    env.pop("TEMPORAL_ADDRESS", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock.cli",
        "up",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--api-port",
        str(api_port),
        "--metrics-port",
        str(free_port()),  # a taken port stops `up` before it starts: never assume 9464 is free
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = await read_until(proc.stdout, "Ctrl-C stops everything", timeout=120)
        assert f"Intake API      http://127.0.0.1:{api_port}" in banner

        tokens = TokenStore(intake_db_path(home))
        token = tokens.create("triage-bot")
        tokens.engine.dispose()
        doc = proposal_doc()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as http:
            health = await http.get("/healthz")
            submitted = await http.post(
                "/v1/proposals", json=doc, headers={"Authorization": f"Bearer {token}"}
            )
        assert health.json() == {"status": "ok"}
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["proposal_id"] == doc["proposal_id"]

        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, rest.decode()
    assert "stopped." in rest.decode()
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            await http.get(f"http://127.0.0.1:{api_port}/healthz")
            raise AssertionError("the intake still answers after Ctrl-C")
        except httpx.TransportError:
            pass

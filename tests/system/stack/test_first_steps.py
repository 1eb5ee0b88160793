"""A newcomer's first five minutes: the steps the `interlock up` banner suggests, read from the
banner itself and run in order in a shell against a fresh stack, each output checked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from interlock.stack import FIRST_STEPS
from tests.integration.api.support import free_port
from tests.integration.api.test_up import read_until

# What each suggested step must print on a fresh stack (the last one is waited for).
EXPECTED = [
    "checkout-api degraded",
    "prop-0001  awaiting_approval",
    "Who may still approve",
    "approved by alice",
    "completed",
]


async def shell(command: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_shell(
        command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode()


async def test_the_banner_suggests_steps_that_work_on_a_fresh_stack(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port, ui_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "INTERLOCK_HOME": str(home),
        "INTERLOCK_TASK_QUEUE": "first-steps",
        "INTERLOCK_LOG_LEVEL": "WARNING",
        "TEMPORAL_ADDRESS": f"localhost:{port}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    env.pop("INTERLOCK_LAB_ROOT", None)
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
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = await read_until(proc.stdout, "Ctrl-C stops everything", timeout=180)
        steps = re.findall(r"^\s+\d\. [^:]+:\s+(interlock .+)$", banner, flags=re.M)
        assert steps == [command for _, command in FIRST_STEPS], banner
        assert "query=WorkflowType%3D%22RemediationWorkflow%22" in banner
        for command, expected in zip(steps[:-1], EXPECTED[:-1], strict=True):
            code, output = await shell(command, env)
            assert code == 0 and expected in output, f"{command}\n{output}"
        # The last step shows the outcome: the approved restart runs, verifies and completes.
        status = ""
        for _ in range(120):
            code, output = await shell("interlock show prop-0001 --json", env)
            status = json.loads(output)["status"] if code == 0 else ""
            if status in ("completed", "completed_unresolved", "rolled_back", "needs_manual_intervention"):
                break
            await asyncio.sleep(1)
        assert status == "completed"
        code, output = await shell(steps[-1], env)
        assert code == 0 and EXPECTED[-1] in output
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

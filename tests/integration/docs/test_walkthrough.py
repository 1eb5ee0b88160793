"""The README, executed: its quickstart command starts a fresh stack, then every command of the
walk-through runs in order in a shell and prints what the README shows."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

from tests.integration.api.support import free_port
from tests.integration.api.test_up import read_until
from tests.integration.docs.readme import README, Step, mismatch, quickstart, walkthrough

# Reads that may show a state still on its way (a run verifying, a rollback): asked again until
# the README's lines appear. Everything else runs exactly once.
READS = ("interlock show", "interlock list", "interlock lab status", "interlock audit")
ROOT = README.parent


async def shell(command: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_shell(
        command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode()


async def run_step(step: Step, env: dict[str, str], cwd: Path) -> None:
    deadline = time.monotonic() + (180 if step.command.startswith(READS) else 0)
    while True:
        code, output = await shell(step.command, env, cwd)
        missing = mismatch(step.expected, output) if code == 0 else "exit code 0"
        if missing is None or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert missing is None, f"$ {step.command}\nthe README promises {missing!r}; it printed:\n{output}"


def test_the_readme_parser_checks_order_and_gaps() -> None:
    assert mismatch(["a", "b"], "a\nb\nc") is None
    assert mismatch(["b"], "a\nb") == "b"  # not the first line, and no `...`
    assert mismatch(["...", "c"], "a\nb\nc") is None
    assert mismatch(["a", "c"], "a\nb\nc") == "c"
    assert mismatch(["x  y"], "x y z") is None
    text = "<!-- walkthrough -->\n```console\n$ one\nout\n$ two\n```\n"
    assert [(s.command, s.expected) for s in walkthrough(text)] == [("one", ["out"]), ("two", [])]


async def test_every_readme_command_works_in_order_on_a_fresh_stack(tmp_path: Path) -> None:
    install, up = (part.strip() for part in quickstart().split("&&"))
    # The install step is what a fresh machine runs first; this suite already ran it.
    assert install == "./scripts/install" and os.access(ROOT / "scripts" / "install", os.X_OK)
    assert up == ".venv/bin/interlock up"
    steps = walkthrough()
    assert len(steps) >= 15 and all(s.command.startswith("interlock ") for s in steps), steps

    port, ui_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "INTERLOCK_HOME": str(tmp_path / ".interlock"),
        "INTERLOCK_LOG_LEVEL": "WARNING",
        "TEMPORAL_ADDRESS": f"localhost:{port}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    for name in ("INTERLOCK_LAB_ROOT", "INTERLOCK_TASK_QUEUE", "INTERLOCK_POLICY_FILE"):
        env.pop(name, None)
    command = [str(Path(sys.executable).parent / "interlock"), *shlex.split(up)[1:]]
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--api-port",
        str(api_port),
        "--metrics-port",
        "0",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        await read_until(proc.stdout, "Ctrl-C stops everything", timeout=180)
        for step in steps:
            await run_step(step, env, tmp_path)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_every_link_of_the_readme_names_a_file_that_exists() -> None:
    links = re.findall(r"\]\(((?:docs|bench)/[^)#]+)", README.read_text())
    assert "docs/approvers.md" in links and "docs/security.md" in links
    assert [link for link in links if not (ROOT / link).exists()] == []

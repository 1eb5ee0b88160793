"""Finding, spawning and stopping the lab's detached processes by their pid files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

_PROC = Path("/proc")


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        # No /proc (not Linux): fall back to signal 0, which counts zombies as alive.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def belongs_to_lab(pid: int, root: Path) -> bool:
    """Guards against pid reuse: only signal processes started for this lab root."""
    if not _PROC.is_dir():
        return True
    argv = _cmdline(pid)
    return any(a.startswith("interlock.lab.") for a in argv) and str(root) in argv


def lab_processes(root: Path) -> list[int]:
    """Every live process started for this lab root, pid file or not."""
    if not _PROC.is_dir():
        return []
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if pid != os.getpid() and belongs_to_lab(pid, root) and pid_alive(pid):
                found.append(pid)
    return sorted(found)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(pid_file: Path, root: Path) -> int | None:
    pid = read_pid(pid_file)
    if pid is not None and pid_alive(pid) and belongs_to_lab(pid, root):
        return pid
    return None


def spawn_detached(launches: Mapping[str, tuple[Sequence[str], Path]], cwd: Path) -> None:
    """Run lab processes that daemonize themselves (``--detach``); return once all have.

    Each process forks away after binding its port, so it is never our child: a
    long-lived caller (worker, test session) collects no zombies and trips no
    ResourceWarning, and whoever restarts it later sees the old pid really gone.
    ``launches`` maps a name to its argv and log file; they start in parallel.
    """
    launchers: dict[str, subprocess.Popen[bytes]] = {}
    for name, (argv, log_file) in launches.items():
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            launchers[name] = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
    failures = []
    for name, launcher in launchers.items():
        try:
            code = launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            launcher.kill()
            code = launcher.wait()
        if code != 0:
            failures.append(f"{name} failed to start (exit {code}):\n{tail(launches[name][1])}")
    if failures:
        raise RuntimeError("\n".join(failures))


def terminate(pids: Iterable[int], grace: float = 5.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` seconds, SIGKILL stragglers; return the killed ones."""
    pending = set()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            pending.add(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if pid_alive(pid)}
        if pending:
            time.sleep(0.05)
    killed = sorted(pending)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while any(pid_alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"

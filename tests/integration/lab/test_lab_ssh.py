"""`interlock lab ssh`: the lab's hosts as real SSH hosts for a user's own playbooks. Each host
answers real `ssh` with the printed key, its host key checked against the printed known_hosts
(StrictHostKeyChecking=yes); a wrong key is refused; Ctrl-C stops every sshd.

Needs Debian's openssh-server: skipped with the reason on a workstation without it, failed
on CI (CI=true), which must have it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from interlock.lab.ssh import SSHD

pytestmark = pytest.mark.timeout(120)


def ssh(port: int, key: Path, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        + ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        + ["127.0.0.1", "echo", "reached"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_lab_ssh_serves_every_host_until_ctrl_c(tmp_path: Path) -> None:
    if not SSHD.exists():
        why = f"{SSHD} missing (apt-get install openssh-server; scripts/test does it where it can)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    folder = tmp_path / "lab-ssh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "interlock.cli", "lab", "ssh", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "INTERLOCK_HOME": str(tmp_path / "home")},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while not any("Ctrl-C stops them" in line for line in lines):
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "".join(lines)
        lines.append(line)
        assert time.monotonic() < deadline, "".join(lines)
    banner = "".join(lines)
    ports = {h: int(p) for h, p in re.findall(r"(web-\d|inventory-\d) 127\.0\.0\.1:(\d+)", banner)}
    assert set(ports) == {"web-1", "web-2", "web-3", "inventory-1", "inventory-2"}, banner
    key = Path(re.search(r"INTERLOCK_SSH_KEY_FILE=(\S+)", banner).group(1))  # type: ignore[union-attr]
    known = Path(re.search(r"INTERLOCK_SSH_KNOWN_HOSTS=(\S+)", banner).group(1))  # type: ignore[union-attr]
    inventory = yaml.safe_load((folder / "hosts.yml").read_text())
    assert inventory["lab"]["hosts"]["web-2"]["ansible_port"] == ports["web-2"]
    assert set(inventory["lab"]["children"]["checkout-api"]["hosts"]) == {"web-1", "web-2", "web-3"}
    try:
        for port in ports.values():
            done = ssh(port, key, known)
            assert done.returncode == 0 and done.stdout.strip() == "reached", done.stderr
        # Key-only: another key is refused.
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        refused = ssh(ports["web-1"], other, known)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "SSH hosts stopped." in rest, rest
    for host in ports:
        pid = int((folder / host / "sshd.pid").read_text()) if (folder / host / "sshd.pid").exists() else None
        if pid is not None:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)

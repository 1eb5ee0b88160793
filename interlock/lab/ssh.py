"""The lab's fleet as real SSH hosts: one `sshd` per host on 127.0.0.1, key-only, with a
known_hosts file and an inventory Ansible reaches them with.

Needs Debian's `openssh-server` (`/usr/sbin/sshd`) and `ssh-keygen`. Every host runs the same
machine's lab processes; what differs from a local connection is the way in: SSH, a key, a
checked host key and the system Python (no copy of the worker's virtualenv on a "remote").
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SSHD = Path("/usr/sbin/sshd")
# The Python a remote host has: the system one, never the worker's virtualenv.
REMOTE_PYTHON = "/usr/bin/python3"
READY_TIMEOUT = 10.0


class SshUnavailable(RuntimeError):
    """No sshd or ssh-keygen on this machine (`apt-get install openssh-server`)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SshFleet:
    """Running sshd processes, one per host, and the files a worker needs to reach them."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Variables every session on these hosts starts with (sshd's SetEnv), e.g. a PATH that puts
    # a test double of a host tool first.
    session_env: dict[str, str] = field(default_factory=dict)

    @property
    def key_file(self) -> Path:
        return self.root / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def inventory_file(self) -> Path:
        return self.root / "hosts.yml"

    @classmethod
    def start(
        cls, root: Path, groups: dict[str, list[str]], session_env: dict[str, str] | None = None
    ) -> SshFleet:
        """Start one sshd per host of `groups` (service -> hosts) and write key, known_hosts and
        an inventory: group `lab` holds every host, and each service is a group of its hosts.
        `session_env`: variables set in every SSH session (names and values without spaces)."""
        if not SSHD.exists() or shutil.which("ssh-keygen") is None:
            raise SshUnavailable(f"{SSHD} or ssh-keygen missing: apt-get install openssh-server")
        root.mkdir(parents=True, exist_ok=True)
        env = dict(session_env or {})
        for name, value in env.items():
            if not name.isidentifier() or any(c.isspace() or c == '"' for c in value):
                raise ValueError(f"session_env {name!r}: a name and a value without spaces or quotes")
        fleet = cls(root=root, groups={k: list(v) for k, v in groups.items()}, session_env=env)
        client_pub = _keygen(fleet.key_file)
        (root / "authorized_keys").write_text(client_pub + "\n")
        os.chmod(root / "authorized_keys", 0o600)
        if os.geteuid() == 0:
            # Debian's sshd refuses to start without its privilege separation directory.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        known: list[str] = []
        try:
            for host in sorted({h for hosts in groups.values() for h in hosts}):
                known.append(fleet._start_host(host))
            fleet.known_hosts.write_text("".join(known))
            fleet._write_inventory()
            fleet._wait_ready()
        except BaseException:
            fleet.stop()
            raise
        return fleet

    def _start_host(self, host: str) -> str:
        hdir = self.root / host
        hdir.mkdir()
        host_pub = _keygen(hdir / "host_key")
        port = _free_port()
        config = hdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"HostKey {hdir / 'host_key'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    f"PidFile {hdir / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    # The lab's files live under a temporary folder, not a home with strict modes.
                    "StrictModes no",
                    "LogLevel ERROR",
                    f"AllowUsers {getpass.getuser()}",
                    *(f"SetEnv {name}={value}" for name, value in self.session_env.items()),
                    "",
                ]
            )
        )
        with (hdir / "sshd.log").open("ab") as log:
            self.processes[host] = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ports[host] = port
        key_type, key = host_pub.split()[:2]
        return f"[127.0.0.1]:{port} {key_type} {key}\n"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for host, port in self.ports.items():
            while True:
                if self.processes[host].poll() is not None:
                    log = (self.root / host / "sshd.log").read_text(errors="replace")
                    raise RuntimeError(f"sshd for {host} exited: {log.strip()[-500:]}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                        if s.recv(4).startswith(b"SSH-"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd for {host} did not answer on port {port}")
                time.sleep(0.05)

    def inventory(self) -> dict[str, object]:
        user = getpass.getuser()
        hosts = {
            host: {
                "ansible_host": "127.0.0.1",
                "ansible_port": port,
                "ansible_user": user,
                "ansible_connection": "ssh",
                "ansible_python_interpreter": REMOTE_PYTHON,
            }
            for host, port in sorted(self.ports.items())
        }
        children = {group: {"hosts": {h: None for h in members}} for group, members in self.groups.items()}
        return {"lab": {"hosts": hosts, "children": children}}

    def _write_inventory(self) -> None:
        text = "---\n# Written by interlock.lab.ssh: the lab's fleet over SSH.\n"
        self.inventory_file.write_text(text + yaml.safe_dump(self.inventory(), sort_keys=False))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

"""Where things live under a lab root, and the starting state a new or reset lab gets."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The same pattern the playbooks assert on: names end up in paths and URLs.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
MONITOR = "monitor"

# Release name -> does that release pass its health check. checkout-api carries a
# broken v0 so a rollback can be shown to fail verification.
STARTING_RELEASES: dict[str, dict[str, bool]] = {
    "checkout-api": {"v0": False, "v1": True, "v2": True},
    "inventory-api": {"v1": True, "v2": True},
}
OTHER_SERVICE_RELEASES: dict[str, bool] = {"v1": True, "v2": True}
# The lab as a fleet: each of these hosts runs its own process of the service, on its own port.
FLEET_HOSTS: dict[str, list[str]] = {
    "checkout-api": ["web-1", "web-2", "web-3"],
    "inventory-api": ["inventory-1", "inventory-2"],
}


def instance(name: str, host: str | None) -> str:
    """The lab's name for one process: the service, or the service on one host."""
    return f"{name}@{host}" if host else name


STARTING_RELEASE = "v2"
STARTING_ACCESS: dict[str, list[str]] = {
    "payments-oncall": ["lee"],
    "platform-admins": ["mo"],
}


def check_name(kind: str, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"invalid {kind} name {name!r}: must match {NAME_PATTERN.pattern}")


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "lab.json"

    @property
    def changes(self) -> Path:
        return self.root / "changes.jsonl"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def change_records(self) -> Path:
        # Idempotency records of the lab_service module and the playbooks.
        return self.run_dir / "changes"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def access_dir(self) -> Path:
        return self.root / "access"

    @property
    def services_dir(self) -> Path:
        return self.root / "services"

    def service_dir(self, name: str) -> Path:
        return self.services_dir / name

    def fault_file(self, name: str) -> Path:
        # A failing dependency of the service: errors that survive a restart.
        return self.run_dir / "faults" / name

    def restart_fault_file(self, name: str) -> Path:
        # The next start of this process comes up broken (once): `lab degrade --after-restart`.
        return self.run_dir / "faults" / f"{name}.after-restart"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"


def load_config(root: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(LabPaths(root).config.read_text())
    return config


def write_atomic(path: Path, text: str) -> None:
    # Readers (other processes, Ansible) must never see a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append_change(root: Path, record: dict[str, Any]) -> None:
    line = json.dumps({"ts": utc_now(), **record}, sort_keys=True) + "\n"
    # One O_APPEND write per record keeps lines whole when several processes append.
    fd = os.open(LabPaths(root).changes, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

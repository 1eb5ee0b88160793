"""Shared by the lab and playbook tests: a running lab that is always stopped, leak-checked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from interlock.lab import Lab


def lab_pids(root: Path) -> list[int]:
    """Live processes whose command line names this lab root, found independently of Lab."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root).encode() in argv and state != "Z":
            pids.append(int(entry.name))
    return pids


@contextmanager
def running_lab(root: Path) -> Iterator[Lab]:
    lab = Lab(root)
    lab.create()
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
    assert lab_pids(root) == [], "lab processes outlived Lab.stop()"


def changes(lab: Lab) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lab.paths.changes.read_text().splitlines()]

"""Running the playbooks through ansible-runner the way Interlock does, and reading results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from interlock.facts import reported

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


@dataclass
class PlaybookRun:
    status: str
    rc: int
    events: list[dict[str, Any]]

    @property
    def stats(self) -> dict[str, Any]:
        """What the playbook reported with set_stats (per_host: true), for its one host.

        Read the way Interlock reads it: from the host's own set_stats task result (the
        ``runner_on_ok`` event), never from the aggregate of the ``playbook_on_stats`` event.
        """
        per_host = reported(self.events)
        if len(per_host) != 1:
            raise AssertionError(f"expected set_stats from one host, got {sorted(per_host) or 'none'}")
        return next(iter(per_host.values()))

    def changed_tasks(self) -> dict[str, dict[str, Any]]:
        """Task name -> module result, for every task that reported a change."""
        return {
            e["event_data"]["task"]: e["event_data"]["res"]
            for e in self.events
            if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")
        }

    def failed_task(self) -> str | None:
        failed = [e for e in self.events if e["event"] == "runner_on_failed"]
        return str(failed[0]["event_data"]["task"]) if failed else None


RunPlaybook = Callable[..., PlaybookRun]


class _Unsafe(str):
    pass


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(
    _Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value), style='"')
)


def unsafe_extravars(values: dict[str, Any]) -> str:
    """YAML for ``-e @file`` with every string tagged ``!unsafe``.

    Ansible renders Jinja inside extra vars before any task runs, so an assert cannot
    stop a ``{{ lookup('pipe', ...) }}`` value; ``!unsafe`` values are never rendered.
    """
    tagged = {k: _Unsafe(v) if isinstance(v, str) else v for k, v in values.items()}
    return yaml.dump(tagged, Dumper=_UnsafeDumper, sort_keys=True)

"""A change and its check in one Ansible run: the stages' boundary and the facts' hand-over.

`run_change` runs one ansible-playbook process over a playbook Interlock writes for the run:

    - import_playbook: <the action's run (or rollback) playbook>
    - name: interlock hand-over <nonce>          # Interlock's own play, on the run's hosts
      tasks: [set_fact interlock_facts from query('interlock_handover', ...)]
    - import_playbook: <the action's verify playbook>

ansible-runner hands each event to `StageSplit.see` as it comes. When the hand-over play
starts, every event of the change is in, so the change's facts are checked here, in Python, by
the same rules as between two runs (`interlock.facts`), and written to a file the hand-over's
lookup waits for. A host whose facts are refused fails the hand-over, so Ansible never runs the
verify play on it; a host the change failed on never reaches the hand-over (Ansible drops it).
Which stage a host failed in, and why, is read from the events, never from Ansible's total.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interlock import facts as host_facts
from interlock.models import CHECK_OF, HostFacts, Stage
from interlock.policy import ActionSpec

HANDOVER_FILE = "interlock_handover.json"
HANDOVER_TASK = "interlock: facts for verify"
# Where the hand-over's lookup plugin lives: beside the playbook Interlock writes for the run.
LOOKUP_PLUGINS = Path(__file__).with_name("lookup_plugins")
_TASK_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")


def _host(event: dict[str, Any]) -> str:
    return str((event.get("event_data") or {}).get("host") or "")


@dataclass
class Outcome:
    """Each stage's status and rc, as if it had run on its own (None: the check did not run)."""

    first_status: str
    first_rc: int
    second_status: str | None
    second_rc: int


@dataclass
class StageSplit:
    """Cuts one run's events into the change, the hand-over and the check, as they arrive; hands
    the change's checked facts over; and stops a stage that outlives its own timeout."""

    stage: Stage
    action: ActionSpec
    # The facts handed to the run itself (a rollback's: the execution's), None for an execution.
    handed: HostFacts | None
    handover: Path
    nonce: str
    deadlines: list[float]  # seconds the change, then the check, may run
    parts: list[list[dict[str, Any]]] = field(default_factory=lambda: [[], [], []])
    phase: int = 0
    began: float = field(default_factory=time.monotonic)
    checked_at_monotonic: float | None = None
    # Wall-clock moments for the stages' results and spans.
    handed_wall: float | None = None
    checked_wall: float | None = None
    refused: dict[str, str] = field(default_factory=dict)
    # The stage a deadline stopped (None: no deadline passed).
    overdue_stage: Stage | None = None

    @property
    def marker(self) -> str:
        return f"interlock hand-over {self.nonce}"

    @property
    def then(self) -> Stage:
        return CHECK_OF[self.stage]

    def current(self) -> Stage:
        return self.stage if self.phase < 2 else self.then

    def see(self, event: dict[str, Any]) -> None:
        if event.get("event") == "playbook_on_play_start":
            name = str((event.get("event_data") or {}).get("name") or "")
            if self.phase == 0 and name == self.marker:
                self.phase = 1
                self.handed_wall = time.time()
                self.write_handover()
            elif self.phase == 1:
                self.phase = 2
                self.checked_at_monotonic, self.checked_wall = time.monotonic(), time.time()
        self.parts[self.phase].append(event)

    def write_handover(self) -> None:
        """The facts the check may read: the change's own, checked per host (an execution), or
        the facts the run was handed (a rollback: its check reads the execution's facts)."""
        if self.handed is not None:
            facts: HostFacts = self.handed
        else:
            reported = host_facts.reported(self.parts[0])
            facts = {}
            for host in sorted({_host(e) for e in self.parts[0] if e.get("event") in _TASK_EVENTS} - {""}):
                found, problems = host_facts.check_facts(
                    reported, self.action.facts, [host], require_all=True
                )
                if problems:
                    self.refused[host] = "declared facts refused: " + "; ".join(problems)
                else:
                    facts.update(found)
        temporary = self.handover.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"facts": facts, "refused": self.refused}, out)
        os.replace(temporary, self.handover)

    def overdue(self) -> bool:
        """Whether the stage running now has outlived its own timeout (then the run is stopped)."""
        now = time.monotonic()
        if self.phase == 0 and now - self.began > self.deadlines[0]:
            self.overdue_stage = self.stage
        elif (
            self.phase == 2
            and self.checked_at_monotonic is not None
            and now - self.checked_at_monotonic > self.deadlines[1]
        ):
            self.overdue_stage = self.then
        return self.overdue_stage is not None

    def change_events(self) -> list[dict[str, Any]]:
        """The change's events, with the hand-over's failures (a refusal names the host and why)."""
        handover_failed = [
            e for e in self.parts[1] if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
        ]
        return self.parts[0] + handover_failed

    def outcome(self, status: str, rc: int) -> Outcome:
        """Each stage's status from the run's status, rc and events. The change succeeded when
        every host it ran on reached the hand-over (refused facts are judged by the change's own
        result); the check ran only then, and its result is the run's."""
        stopped = {"canceled": "canceled", "timeout": "timeout"}.get(status)
        if self.overdue_stage is not None:
            stopped = "timeout"
        if self.phase == 0 or (self.phase == 1 and stopped):
            return Outcome(stopped or (status if status != "successful" else "failed"), rc, None, rc)
        touched = {_host(e) for e in self.parts[0] if e.get("event") in _TASK_EVENTS} - {""}
        # Ansible's own verdict: a host it did not drop reached the hand-over (ok, or refused).
        reached = {_host(e) for e in self.parts[1] if e.get("event") in _TASK_EVENTS}
        handover_failed = {
            _host(e) for e in self.parts[1] if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
        }
        if touched - reached or handover_failed - set(self.refused):
            # The check never ran where the change did not succeed (or the hand-over itself
            # failed, which change_events names): it is not reported.
            return Outcome("failed", 2, None, rc)
        if reached & set(self.refused):
            # Ran, but its facts are refused: the change's own result says so (facts_refused).
            return Outcome("successful", 0, None, rc)
        if stopped:
            return Outcome("successful", 0, stopped, rc)
        second = "successful" if status == "successful" and rc == 0 else "failed"
        return Outcome("successful", 0, second, rc)


def write_change_playbook(path: Path, first: Path, second: Path, split: StageSplit) -> None:
    """The run's playbook: the change, Interlock's hand-over play, the check (absolute paths, so
    each imported playbook keeps its own directory for its tasks, library and templates)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    plugins = path.parent / "lookup_plugins"
    if not plugins.exists():
        plugins.symlink_to(LOOKUP_PLUGINS, target_is_directory=True)
    document = [
        {"ansible.builtin.import_playbook": str(first)},
        {
            "name": split.marker,
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "name": HANDOVER_TASK,
                    "ansible.builtin.set_fact": {
                        "interlock_facts": "{{ query('interlock_handover', interlock_handover) | first }}"
                    },
                }
            ],
        },
        {"ansible.builtin.import_playbook": str(second)},
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))

"""Committed histories of an approved, a rejected and a rolled-back proposal replay cleanly.

A change to the workflow that breaks determinism for proposals already in flight fails here.
The `*_before_*` histories were recorded by earlier versions of the workflow (before the
playbook task queue, before audit batches): they must keep replaying, through `workflow.patched`.
Re-record with `INTERLOCK_RECORD_HISTORIES=1 pytest tests/integration/workflows/test_lifecycle.py` (and
`tests/integration/api/test_dedup.py -k five` for duplicates_attached, a proposal with four duplicates;
`tests/integration/fleet/test_preview.py -k unauthorised` for preview_failed, over real SSH).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.worker import Replayer

from interlock.audit.history import AUDIT_ACTIVITY, AUDIT_BATCH_ACTIVITY, load_history, read_history
from interlock.temporal import DATA_CONVERTER
from interlock.workflows.remediation import RemediationWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_the_three_histories_are_committed() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"approved_restart", "rejected_rollback", "rolled_back_v0"} <= names
    # and the long ways through the gate: continue-as-new (both runs), escalation then expiry,
    # a pause then a resume
    assert {
        "continued_first_run",
        "continued_second_run",
        "escalated_then_expired",
        "paused_then_resumed",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_without_nondeterminism(path: Path) -> None:
    history = load_history(path.read_text(), path.stem)
    result = await Replayer(workflows=[RemediationWorkflow], data_converter=DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=True
    )
    assert result.replay_failure is None


def audit_trail(name: str) -> tuple[list[str], int]:
    """(the audit event kinds in recorded order, how many audit activities wrote them)."""
    history = load_history((HISTORIES[0].parent / f"{name}.json").read_text(), name)
    events = read_history(history).audit_events.values()
    kinds = [e["kind"] for e in sorted(events, key=lambda e: int(e["event_id"].split("/")[-2]))]
    activities = sum(
        1
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name
        in (AUDIT_ACTIVITY, AUDIT_BATCH_ACTIVITY)
    )
    return kinds, activities


@pytest.mark.parametrize(
    ("batched", "unbatched"),
    [
        ("approved_restart", "approved_restart_before_audit_batches"),
        ("rejected_rollback", "rejected_before_audit_batches"),
        ("rolled_back_v0", "rolled_back_before_audit_batches"),
    ],
)
def test_audit_batches_record_the_same_events_in_fewer_activities(batched: str, unbatched: str) -> None:
    kinds, activities = audit_trail(batched)
    old_kinds, old_activities = audit_trail(unbatched)
    assert kinds == old_kinds
    assert "final" in kinds
    # completed: 10 events in 5 writes (submitted+evidence+risk, preview, decision+start,
    # finished, verifications+final); rejected: 6 in 3.
    assert activities <= old_activities // 2 + 1

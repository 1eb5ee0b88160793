"""Committed histories of an approved, a rejected and a rolled-back proposal replay cleanly.

A change to the workflow that breaks determinism for proposals already in flight fails here.
Re-record with `INTERLOCK_RECORD_HISTORIES=1 pytest tests/workflows/test_lifecycle.py` (and
`tests/api/test_dedup.py -k five` for duplicates_attached, a proposal with four duplicates).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.remediation import RemediationWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_the_three_histories_are_committed() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"approved_restart", "rejected_rollback", "rolled_back_v0"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(
        workflows=[RemediationWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None

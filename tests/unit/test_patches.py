"""Patches with an exit plan: every `workflow.patched` name is registered in workflows/patches.py,
each patch still in its first step has a history from before it that replays, and today's
histories replay with each patch deprecated (its old branch gone), the plan's second step."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from interlock.audit.history import load_history
from interlock.temporal import DATA_CONVERTER
from interlock.workflows import patches
from interlock.workflows.patches import PATCHES, Patch, Step
from interlock.workflows.remediation import RemediationWorkflow

ROOT = Path(__file__).parents[2]
HISTORIES = sorted((ROOT / "tests" / "histories").glob("*.json"))


def test_every_patch_the_workflow_calls_is_registered_with_its_plan() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "workflows").glob("*.py") if p.name != "patches.py")
    called = set(re.findall(r"workflow\.(?:patched|deprecate_patch)\((\w+)\)", source))
    registered = {f"{p.name}" for p in PATCHES}
    names = {value.name for value in vars(patches).values() if isinstance(value, Patch)}
    assert names == registered
    # Called through module constants, which are the registry's names.
    from interlock.workflows import core, stages

    assert {getattr(core, c, None) or getattr(stages, c) for c in called} == registered


def markers(path: Path) -> set[str]:
    """The patch ids a stored history recorded (its MarkerRecorded events)."""
    history = load_history(path.read_text(), path.stem)
    found = set()
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            payloads = event.marker_recorded_event_attributes.details.get("patch-data")
            if payloads and payloads.payloads:
                found.add(json.loads(payloads.payloads[0].data)["id"])
    return found


RECORDED = {path.stem: markers(path) for path in HISTORIES}


@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
def test_each_patch_has_histories_from_before_and_after_it(patch: Patch) -> None:
    # Before: the old branch must keep replaying while the patch is in its first step.
    if patch.step is Step.PATCHED:
        assert any(patch.name not in m for m in RECORDED.values())
    # After: the histories its deprecation step must replay.
    assert any(patch.name in m for m in RECORDED.values()), f"no stored history recorded {patch.name}"


@contextmanager
def deprecated(patch: Patch) -> Iterator[None]:
    """Today's code with `patch` at its second step: the call is deprecate_patch, the new branch always."""
    original = workflow.patched

    def patched(name: str) -> bool:
        if name == patch.name:
            workflow.deprecate_patch(name)
            return True
        return original(name)

    workflow.patched = patched  # type: ignore[assignment]
    try:
        yield
    finally:
        workflow.patched = original  # type: ignore[assignment]


@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
async def test_histories_recorded_with_a_patch_replay_once_it_is_deprecated(patch: Patch) -> None:
    # Histories from before the patch would no longer replay at this step: they are left out.
    current = [p for p in HISTORIES if patch.name in RECORDED[p.stem]]
    assert current
    replayer = Replayer(
        workflows=[RemediationWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    with deprecated(patch):
        for path in current:
            result = await replayer.replay_workflow(
                load_history(path.read_text(), path.stem), raise_on_replay_failure=False
            )
            assert result.replay_failure is None, f"{path.stem}: {result.replay_failure}"

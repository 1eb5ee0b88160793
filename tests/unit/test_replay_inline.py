"""Bulk replay runs each activation on the event loop's thread, under a watchdog of its own.

The SDK's debug mode gives the inline activations and turns its deadlock detection off; the
watchdog (interlock.audit.replay_payloads) fails a history whose workflow never yields, as the
SDK's detection would, instead of hanging the whole replay.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from interlock.audit import replay_payloads
from interlock.audit.history import _replay_each, load_history, replay_many, replayer

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))
HISTORY = Path(__file__).parent.parent / "histories" / "duplicates_attached.json"


@workflow.defn(name="RemediationWorkflow", sandboxed=False)
class SpinningWorkflow:
    """Today's code gone wrong: a loop that never yields to the SDK."""

    @workflow.run
    async def run(self, inp: dict[str, Any]) -> None:
        while True:
            pass


async def test_inline_replay_gives_the_outcomes_of_the_threaded_one() -> None:
    broken = load_history(HISTORY.read_text().replace('"check_proposal"', '"check_proposal_renamed"'), "b")
    histories = [load_history(p.read_text(), p.stem) for p in HISTORIES] + [broken]

    inline = await replay_many(histories, jobs=1)  # unsandboxed, jobs=1: the inline Replayer
    threaded = await _replay_each(replayer(sandboxed=False), histories)

    assert [(o.workflow_id, o.error) for o in inline] == [(o.workflow_id, o.error) for o in threaded]
    assert all(o.ok for o in inline[:-1]) and not inline[-1].ok


@pytest.mark.timeout(60)
async def test_a_workflow_that_never_yields_fails_its_replay_instead_of_hanging() -> None:
    replay_payloads.inline_activations()
    engine = Replayer(
        workflows=[SpinningWorkflow],
        data_converter=replay_payloads.BULK_REPLAY_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
        debug_mode=True,
    )
    started = time.monotonic()

    (outcome,) = await _replay_each(engine, [load_history(HISTORY.read_text(), HISTORY.stem)])

    assert not outcome.ok
    assert time.monotonic() - started < replay_payloads.DEADLOCK_SECONDS + 10

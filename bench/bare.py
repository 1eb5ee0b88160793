"""The floor: a bare Temporal workflow with Interlock's shape and none of its logic.

It runs `before` no-op activities one after another, starts a background one (the notification),
waits for an `approve` Update under a timer, then runs `after` activities and a last background
one. The counts are taken from an Interlock history measured in the same run.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from interlock.search import SA_STATUS


class BareInput(BaseModel):
    before: int
    after: int
    background: int = 1
    wait: timedelta = timedelta(hours=24)


class Step(BaseModel):
    n: int
    payload: str = ""


@activity.defn(name="bare_step")
async def bare_step(step: Step) -> Step:
    return step


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self._status = "starting"
        self._approved = False

    @workflow.run
    async def run(self, inp: BareInput) -> str:
        opts = {"start_to_close_timeout": timedelta(seconds=30)}
        for n in range(inp.before):
            await workflow.execute_activity(bare_step, Step(n=n), **opts)  # type: ignore[arg-type]
        background = [
            workflow.start_activity(bare_step, Step(n=-1), **opts)  # type: ignore[arg-type]
            for _ in range(inp.background)
        ]
        self._set_status("awaiting_approval")
        try:
            await workflow.wait_condition(lambda: self._approved, timeout=inp.wait)
        except TimeoutError:
            self._set_status("expired")
            return self._status
        self._set_status("executing")
        for n in range(inp.after):
            await workflow.execute_activity(bare_step, Step(n=n), **opts)  # type: ignore[arg-type]
        background += [
            workflow.start_activity(bare_step, Step(n=-2), **opts)  # type: ignore[arg-type]
            for _ in range(inp.background)
        ]
        for handle in background:
            await handle
        self._set_status("completed")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    def _set_status(self, status: str) -> None:
        # As Interlock does: the status is visible to list queries (a command, not a round trip).
        self._status = status
        workflow.upsert_search_attributes([SA_STATUS.value_set(status)])

    @workflow.query(name="bare_status")
    def status(self) -> str:
        return self._status

    @workflow.update(name="approve")
    async def approve(self, who: str) -> str:
        self._approved = True
        await workflow.wait_condition(lambda: self._status != "awaiting_approval")
        return self._status

    @approve.validator
    def _validate(self, who: str) -> None:
        if self._status != "awaiting_approval":
            raise ValueError(f"not awaiting approval ({self._status})")

"""NO-OP stand-in for the Ansible activity, for benchmarks only (labelled so in every result).

It has the real activities' names (`run_playbook`, and `run_change` for a change and its check in
one run) and shapes (PlaybookRun in, PlaybookResult or ChangeResult out, a preview with a plan, the
real playbooks digest so the pre-execution re-check passes), and runs nothing. With it the
benchmarks measure what Interlock's engine costs on top of Temporal, without Ansible's seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from temporalio import activity

from interlock.activities.ansible import playbooks_digest
from interlock.models import (
    CHECK_OF,
    ChangeResult,
    PlaybookResult,
    PlaybookRun,
    RolloutPlan,
    Stage,
    TaskResult,
)
from interlock.settings import Settings

# A proposal id containing this makes the no-op verify fail, to exercise the rollback path.
FAIL_VERIFY = "failverify"


class NoopPlaybooks:
    def __init__(self, settings: Settings):
        self.digest = playbooks_digest(settings.playbooks_dir)
        # Wall-clock time each execution started, by proposal id (for the decision latency).
        self.execute_started: dict[str, float] = {}

    @activity.defn(name="run_playbook")
    async def run_playbook(self, run: PlaybookRun) -> PlaybookResult:
        now = datetime.now(UTC)
        if run.stage is Stage.EXECUTE:
            self.execute_started.setdefault(run.proposal_id, time.time())
        ok = not (run.stage is Stage.VERIFY and FAIL_VERIFY in run.proposal_id)
        changed = run.stage in (Stage.PREVIEW, Stage.EXECUTE, Stage.ROLLBACK)
        return PlaybookResult(
            stage=run.stage,
            playbook=f"noop:{run.action}:{run.stage.value}",
            status="successful" if ok else "failed",
            rc=0 if ok else 2,
            ok=ok,
            tasks=[
                TaskResult(
                    host="lab",
                    task="no-op (benchmark stand-in for Ansible)",
                    status="changed" if changed else ("ok" if ok else "failed"),
                    changed=changed,
                    diff="- before\n+ after\n" if changed else None,
                    msg=None if ok else "no-op verify failure (benchmark)",
                )
            ],
            # Per host, as a real run reports them (set_stats per_host) for verify and rollback.
            host_facts={"lab": {"previous_pid": 1, "pid": 2}} if run.stage is Stage.EXECUTE else {},
            started_at=now,
            finished_at=datetime.now(UTC),
            error=None if ok else "no-op verify failure (benchmark)",
            playbooks_digest=self.digest,
            # As a real preview: a plan (no catalog hosts here: one run, not a rollout).
            plan=RolloutPlan() if run.stage is Stage.PREVIEW else None,
        )

    @activity.defn(name="run_change")
    async def run_change(self, run: PlaybookRun) -> ChangeResult:
        change = await self.run_playbook(run)
        if not change.ok:
            return ChangeResult(change=change)
        facts = change.host_facts if run.stage is Stage.EXECUTE else run.host_facts
        check = await self.run_playbook(
            run.model_copy(update={"stage": CHECK_OF[run.stage], "host_facts": facts})
        )
        return ChangeResult(change=change, check=check)

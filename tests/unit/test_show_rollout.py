"""`interlock show` of a rollout: the runs are shown per batch (each batch, then its own runs,
under the per-host summary), never the proposal-wide aggregate, whose status
cannot say that batch 2 failed in verify rather than in execute. Pure rendering; no server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from interlock.cli.common import out
from interlock.cli.proposals import render_state
from interlock.models import (
    BatchResult,
    BatchStatus,
    HostResult,
    PlaybookResult,
    ProposalState,
    ProposalStatus,
    Stage,
    TaskResult,
)

STATE = Path(__file__).parent / "data" / "rollback_awaiting.json"
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def run(stage: Stage, playbook: str, host: str, status: str, task: str) -> PlaybookResult:
    ok = status != "failed"
    return PlaybookResult(
        stage=stage,
        playbook=playbook,
        status="successful" if ok else "failed",
        rc=0 if ok else 2,
        ok=ok,
        tasks=[TaskResult(host=host, task=task, status=status, changed=status == "changed")],
        started_at=NOW,
        finished_at=NOW,
    )


def rolled_back_rollout() -> ProposalState:
    state = ProposalState.model_validate_json(STATE.read_text())
    state.status = ProposalStatus.ROLLED_BACK
    b1 = BatchResult(
        index=0,
        hosts=["web-1"],
        status=BatchStatus.ROLLED_BACK,
        results=[HostResult(host="web-1", stage=Stage.ROLLBACK, status="changed", changed=True)],
        execution=run(Stage.EXECUTE, "restart_service.yml", "web-1", "changed", "Restart"),
        verification=run(Stage.VERIFY, "restart_service_verify.yml", "web-1", "ok", "Check health"),
        rollback=run(Stage.ROLLBACK, "restart_service_rollback.yml", "web-1", "changed", "Undo"),
    )
    b2 = BatchResult(
        index=1,
        hosts=["web-2"],
        status=BatchStatus.ROLLED_BACK,
        results=[HostResult(host="web-2", stage=Stage.VERIFY, status="failed", reason="web-2 answered 503")],
        execution=run(Stage.EXECUTE, "restart_service.yml", "web-2", "changed", "Restart"),
        verification=run(Stage.VERIFY, "restart_service_verify.yml", "web-2", "failed", "Check health"),
        rollback=run(Stage.ROLLBACK, "restart_service_rollback.yml", "web-2", "changed", "Undo"),
    )
    b3 = BatchResult(index=2, hosts=["web-3"], status=BatchStatus.NOT_RUN)
    # The proposal-wide aggregate, as the workflow records it: "execute ... failed".
    aggregate = run(Stage.EXECUTE, "restart_service.yml", "web-2", "failed", "Restart")
    aggregate.batches = [b1, b2, b3]
    state.execution, state.verification, state.rollback = aggregate, b2.verification, b2.rollback
    return state


def test_show_of_a_rollout_lists_each_batch_with_its_own_runs() -> None:
    with out.capture() as captured:
        render_state(rolled_back_rollout())
    shown = captured.get()
    summary = shown.split("### Rollout, batch by batch\n")[1].split("\n### ")[0].splitlines()
    assert [line for line in summary if line] == [
        "- batch 1: web-1: rolled_back",
        "  - web-1 (rollback) changed",
        "- batch 2: web-2: rolled_back",
        "  - web-2 (verify) failed: web-2 answered 503",
        "- batch 3: web-3: not_run",
    ]
    section = shown.split("### Runs, batch by batch\n")[1].split("\n### ")[0].splitlines()
    assert section == [
        "- batch 1: web-1: rolled_back",
        "  - execute: restart_service.yml successful (rc 0)",
        "      changed   web-1: Restart",
        "  - verify: restart_service_verify.yml successful (rc 0)",
        "      ok        web-1: Check health",
        "  - rollback: restart_service_rollback.yml successful (rc 0)",
        "      changed   web-1: Undo",
        "- batch 2: web-2: rolled_back",
        "  - execute: restart_service.yml successful (rc 0)",
        "      changed   web-2: Restart",
        "  - verify: restart_service_verify.yml failed (rc 2)",
        "      failed    web-2: Check health",
        "  - rollback: restart_service_rollback.yml successful (rc 0)",
        "      changed   web-2: Undo",
        "- batch 3: web-3: not_run",
    ]
    # The aggregate's misleading line is not shown, nor a second, proposal-wide section.
    assert "### Execution\n" not in shown and "### Batches" not in shown

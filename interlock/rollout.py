"""Rolling execution as pure rules: how hosts split into batches, what a playbook run says about
each host, which hosts a failed rollout must roll back, and the plan hash that binds the hosts.

No I/O: the workflow and the playbook activity both use these, and they are unit-tested alone.
"""

from __future__ import annotations

import hashlib
import json
import math

from interlock.models import (
    BatchResult,
    BatchStatus,
    HostResult,
    PlaybookResult,
    RolloutPlan,
    Stage,
    TaskResult,
)

# How bad a task status is, for a host's summary over its tasks: the worst one wins.
_RANK = {"skipped": 0, "ok": 1, "changed": 2, "failed": 3, "unreachable": 4}


def batch_size(batch: int | str, total: int) -> int:
    """Hosts per batch: a count, or a share of the fleet ("25%", rounded up, at least 1)."""
    if total <= 0:
        return 0
    if isinstance(batch, str):
        share = int(batch.rstrip("%"))
        return max(1, min(total, math.ceil(total * share / 100)))
    return max(1, min(total, batch))


def make_batches(hosts: list[str], batch: int | str) -> list[list[str]]:
    """The hosts in order, cut into batches of `batch_size`."""
    size = batch_size(batch, len(hosts))
    return [hosts[i : i + size] for i in range(0, len(hosts), size)] if size else []


def previewed_hosts(tasks: list[TaskResult], order: list[str]) -> list[str]:
    """Every host the preview ran on: in the catalog's order where it lists them, then the rest
    (hosts of an inventory group) sorted."""
    seen = {t.host for t in tasks if t.host}
    listed = [h for h in order if h in seen]
    return listed + sorted(seen - set(listed))


def after_rollback(results: list[HostResult], verified: list[HostResult]) -> list[HostResult]:
    """A rolled-back batch's host lines: the rollback's verification for each host, but a
    host's failure (the reason the batch was rolled back) is kept as it was."""
    kept = {r.host: r for r in results if r.status in ("failed", "unreachable")}
    return [kept.get(r.host, r) for r in verified]


def host_results(result: PlaybookResult, hosts: list[str]) -> list[HostResult]:
    """One line per host of a run: its worst task status, and the first failure's reason.

    A host the run never reported on (the playbook or the activity failed before it) is failed
    with the run's own error, so every failure names an inventory host."""
    out: list[HostResult] = []
    for host in hosts:
        mine = [t for t in result.tasks if t.host == host]
        if not mine:
            status = "ok" if result.ok else "failed"
            reason = None if result.ok else (result.error or f"playbook {result.status}")
            out.append(HostResult(host=host, stage=result.stage, status=status, reason=reason))
            continue
        worst = max(mine, key=lambda t: _RANK.get(t.status, 3))
        status = worst.status
        reason = None
        if status in ("failed", "unreachable"):
            reason = f"task {worst.task!r} {status} on {host}: {worst.msg or ''}".strip()
        elif not result.ok:
            # Every task passed on this host, but the run failed: say so, not "ok".
            status, reason = "failed", f"{host}: {result.error or 'playbook ' + result.status}"
        out.append(
            HostResult(
                host=host,
                stage=result.stage,
                status=status,
                changed=any(t.changed for t in mine),
                reason=reason,
            )
        )
    return out


def failed_hosts(batch: BatchResult) -> list[str]:
    return [r.host for r in batch.results if r.status in ("failed", "unreachable")]


def hosts_to_roll_back(batch: BatchResult) -> list[str]:
    """The hosts of a batch the forward change reached: all of a batch that ran to the end; of a
    batch whose execution failed, those that changed or failed (a failed task may be half done)."""
    if batch.execution is None:
        return []
    if batch.execution.ok:
        return list(batch.hosts)
    touched = {t.host for t in batch.execution.tasks if t.changed or t.status in ("failed", "unreachable")}
    if not batch.execution.tasks:
        touched = set(batch.hosts)  # the run failed without reporting: assume it may have acted
    return [h for h in batch.hosts if h in touched]


def batch_reasons(batch: BatchResult) -> list[str]:
    return [f"batch {batch.index + 1}: {r.reason}" for r in batch.results if r.reason]


def rolled_out(plan: RolloutPlan | None) -> bool:
    """Whether a preview's plan calls for a rolling execution (it lists hosts)."""
    return plan is not None and bool(plan.batches)


def aggregate(stage: Stage, batches: list[BatchResult], started: PlaybookResult | None) -> PlaybookResult:
    """The whole rollout as one result (what `execution` shows), with each batch inside it."""
    runs = [b.execution for b in batches if b.execution is not None]
    first = runs[0] if runs else started
    assert first is not None
    ok = bool(runs) and all(b.status is BatchStatus.SUCCEEDED for b in batches)
    errors = [r.error for r in runs if r.error]
    return PlaybookResult(
        stage=stage,
        playbook=first.playbook,
        status="successful" if ok else "failed",
        rc=0 if ok else next((r.rc for r in runs if r.rc != 0), 1),
        ok=ok,
        tasks=[t for r in runs for t in r.tasks],
        facts={},
        started_at=first.started_at,
        finished_at=runs[-1].finished_at if runs else first.finished_at,
        error=None if ok else (errors[0] if errors else "rollout stopped"),
        playbooks_digest=first.playbooks_digest,
        batches=batches,
    )


def fleet_plan_hash(base: str, preview: PlaybookResult) -> str:
    """The plan hash with the hosts bound in: each previewed task's host and the batches.

    A changed inventory (another host, a host in another batch) gives another hash, and the
    approvals bound to the old one no longer count."""
    plan = preview.plan or RolloutPlan()
    document = {
        "plan": base,
        "hosts": [[t.host, t.task, t.status] for t in preview.tasks],
        "batches": plan.batches,
        "max_failed": plan.max_failed,
        "pause_seconds": plan.pause_seconds,
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def unreachable_hosts(result: PlaybookResult) -> list[str]:
    """The hosts a run could not reach (a connection or SSH authentication failure), sorted."""
    return sorted({t.host for t in result.tasks if t.status == "unreachable" and t.host})


def infrastructure_failure(result: PlaybookResult) -> str | None:
    """Why a failed run failed for infrastructure, naming the hosts, or None when it did not: a
    host unreachable (SSH refused, authentication failed) or ansible-playbook's rc 4. A playbook
    that ran and failed its own checks is not infrastructure: that is the preview's verdict."""
    if result.ok:
        return None
    hosts = unreachable_hosts(result)
    if hosts:
        first = next(t for t in result.tasks if t.status == "unreachable")
        detail = f": {first.msg.strip()[:300]}" if first.msg else ""
        return f"unreachable: {', '.join(hosts)}{detail}"
    if result.rc == 4:
        return f"ansible-playbook rc 4 (hosts unreachable): {result.error or result.status}"
    return None

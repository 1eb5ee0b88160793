"""Execute and verify in one Ansible run, over real SSH hosts (the action's `verify_separately`
off, the default): one `run_change` activity per batch, each stage's result, audit event and
trace kept apart, the run's facts checked in Interlock before the verify play may read them, a
stage stopped at its own timeout; and `verify_separately: true` runs verify on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client

from interlock.audit.events import EventKind
from interlock.audit.history import load_history, read_history
from interlock.models import BatchStatus, ProposalStatus
from interlock.settings import Settings
from tests.integration.fleet.conftest import Fleet
from tests.integration.fleet.test_preview import own_setup
from tests.integration.fleet.test_rolling import proposal_for
from tests.support import approve, final, propose

HANDED = "handed previous_pid "


def edit_playbook(settings: Settings, name: str, tasks: list[dict[str, Any]], first: bool = True) -> None:
    """Put `tasks` at the start (or end) of the first play of a playbook in the test's own tree."""
    path = settings.playbooks_dir / "project" / name
    plays = yaml.safe_load(path.read_text())
    plays[0]["tasks"] = tasks + plays[0]["tasks"] if first else plays[0]["tasks"] + tasks
    path.write_text(yaml.safe_dump(plays, sort_keys=False))


async def activity_counts(client: Client, workflow_id: str) -> dict[str, int]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    counts: dict[str, int] = {}
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            counts[name] = counts.get(name, 0) + 1
    return counts


async def audit_data(client: Client, workflow_id: str, kind: EventKind) -> list[dict[str, Any]]:
    history = load_history(
        (await client.get_workflow_handle(workflow_id).fetch_history()).to_json(), workflow_id
    )
    events = read_history(history).audit_events.values()
    return [e["data"] for e in events if e["kind"] == kind.value]


async def test_execute_and_verify_share_one_run_and_verify_reads_the_checked_facts(
    client: Client, fresh_fleet: Fleet, worker_for: Any, tmp_path: Path
) -> None:
    # Two batches: web-1 and web-2 together (one run over two SSH hosts), then web-3.
    settings = own_setup(fresh_fleet, tmp_path, {"rollout": {"batch": 2, "max_failed": 0}}, {})
    # The verify play says which previous_pid it was handed for its host.
    edit_playbook(
        settings,
        "restart_service_verify.yml",
        [
            {
                "name": "Say what was handed over",
                "ansible.builtin.debug": {
                    "msg": HANDED + "{{ interlock_facts[inventory_hostname].previous_pid | default('none') }}"
                },
            }
        ],
    )
    task_queue = await worker_for(settings)
    proposal = proposal_for(fresh_fleet)
    before = fresh_fleet.pids()

    state = await propose(client, settings, task_queue, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    after = fresh_fleet.pids()
    assert all(after[h] not in (None, before[h]) for h in before), (before, after)
    # One Ansible run per batch for execute + verify; the preview on its own.
    counts = await activity_counts(client, proposal.proposal_id)
    assert counts.get("run_change") == 2 and counts.get("run_playbook") == 1, counts
    assert done.execution is not None
    batches = done.execution.batches
    assert [b.hosts for b in batches] == [["web-1", "web-2"], ["web-3"]]
    assert [b.status for b in batches] == [BatchStatus.SUCCEEDED] * 2
    for batch in batches:
        assert batch.execution is not None and batch.verification is not None
        execution, verification = batch.execution, batch.verification
        # Each stage's result on its own: its playbook, its tasks, its facts, its times.
        assert execution.playbook == "restart_service.yml" and execution.ok
        assert verification.playbook == "restart_service_verify.yml" and verification.ok
        assert execution.finished_at <= verification.started_at <= verification.finished_at
        assert not any("healthy" in (t.msg or "") for t in execution.tasks)
        assert not any(t.task.startswith("interlock") for t in execution.tasks + verification.tasks)
        # The verify play read, for each host, what that host's own run reported.
        handed = {t.host: t.msg for t in verification.tasks if t.task == "Say what was handed over"}
        assert handed == {h: HANDED + str(execution.host_facts[h]["previous_pid"]) for h in batch.hosts}
        assert {h: execution.host_facts[h]["previous_pid"] for h in batch.hosts} == {
            h: before[h] for h in batch.hosts
        }
    # The audit trail keeps the stages apart: execution_finished has the run's tasks only.
    finished = await audit_data(client, proposal.proposal_id, EventKind.EXECUTION_FINISHED)
    assert [d["hosts"] for d in finished] == [["web-1", "web-2"], ["web-3"]]
    for data in finished:
        assert data["ok"] and not any(t["task"] == "Say what was handed over" for t in data["tasks"])


async def test_facts_refused_at_the_hand_over_stop_verify_and_roll_the_change_back(
    client: Client, fresh_fleet: Fleet, worker_for: Any, tmp_path: Path
) -> None:
    # `mode` is a safe name in check mode (the preview passes) and free text when it runs.
    facts = {
        "previous_pid": {"type": "int", "nullable": True},
        "pid": {"type": "int", "nullable": True},
        "mode": {"type": "str"},
    }
    settings = own_setup(fresh_fleet, tmp_path, {"facts": facts}, {})
    edit_playbook(
        settings,
        "restart_service.yml",
        [
            {
                "name": "Report the mode",
                "ansible.builtin.set_stats": {
                    "per_host": True,
                    "aggregate": False,
                    "data": {"mode": "{{ 'check' if ansible_check_mode else 'not a safe value' }}"},
                },
            }
        ],
        first=False,
    )
    edit_playbook(
        settings,
        "restart_service_verify.yml",
        [{"name": "Verify ran", "ansible.builtin.debug": {"msg": "verify ran"}}],
    )
    task_queue = await worker_for(settings)
    proposal = proposal_for(fresh_fleet, hosts=["web-1"])

    state = await propose(client, settings, task_queue, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.ROLLED_BACK, (done.status, done.reasons)
    assert done.execution is not None
    [batch] = done.execution.batches
    assert batch.execution is not None and batch.execution.status == "facts_refused"
    assert batch.execution.error is not None
    assert batch.execution.error.startswith("declared facts refused: web-1: fact 'mode': ")
    # The verify play never ran: no verification, and no task of it in any result.
    assert batch.verification is None
    assert batch.rollback is not None and batch.rollback.ok
    assert batch.rollback_verification is not None and batch.rollback_verification.ok
    assert not any(t.task == "Verify ran" for t in batch.execution.tasks)
    # The same playbook checked the rollback: it runs where a change did succeed.
    assert any(t.task == "Verify ran" for t in batch.rollback_verification.tasks)
    assert any("facts refused" in r for r in done.reasons), done.reasons


async def test_a_verify_stage_over_its_own_timeout_is_stopped_and_rolled_back(
    client: Client, fresh_fleet: Fleet, worker_for: Any, tmp_path: Path
) -> None:
    timeouts = {"execute": "2m", "verify": "10s"}
    settings = own_setup(fresh_fleet, tmp_path, {"timeouts": timeouts}, {})
    # Forward verification hangs (a rollback's check does not).
    edit_playbook(
        settings,
        "restart_service_verify.yml",
        [
            {
                "name": "Hang",
                "ansible.builtin.pause": {"seconds": 120},
                "when": "interlock_direction == 'forward'",
            }
        ],
    )
    task_queue = await worker_for(settings)
    proposal = proposal_for(fresh_fleet, hosts=["web-1"])

    state = await propose(client, settings, task_queue, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.ROLLED_BACK, (done.status, done.reasons)
    assert done.execution is not None
    [batch] = done.execution.batches
    assert batch.execution is not None and batch.execution.ok
    assert batch.verification is not None and batch.verification.status == "timeout"
    took = (batch.verification.finished_at - batch.verification.started_at).total_seconds()
    assert 10 <= took < 40, took  # its own 10 s (and the run loop's 1 s look), not the execute's 2 min
    assert batch.rollback is not None and batch.rollback.ok
    # Stopped means stopped: no process of the run is left (ansible-core runs each task in a
    # worker of its own session, which killing ansible-playbook's process group alone misses).
    assert running_from(settings.playbooks_dir) == []


def running_from(tree: Path) -> list[str]:
    """The command lines of processes still running with `tree` in them."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(tree) in cmdline:
            found.append(cmdline)
    return found


async def test_verify_separately_runs_verify_in_a_run_of_its_own(
    client: Client, fresh_fleet: Fleet, worker_for: Any, tmp_path: Path
) -> None:
    settings = own_setup(fresh_fleet, tmp_path, {"verify_separately": True}, {})
    task_queue = await worker_for(settings)
    proposal = proposal_for(fresh_fleet, hosts=["web-1"])

    state = await propose(client, settings, task_queue, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.preview is not None and state.preview.plan is not None
    assert state.preview.plan.verify_separately
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    counts = await activity_counts(client, proposal.proposal_id)
    assert counts.get("run_change") is None and counts.get("run_playbook") == 3, counts

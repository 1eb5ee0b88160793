"""The preview over real SSH hosts decides before anyone is asked: a host it cannot reach (closed
port, SSH authentication refused) is retried per the action's `preview_retry` and ends
`preview_failed`; a declared fact a host does not report, typed, ends `rejected_by_checks`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from interlock.audit.events import EventKind
from interlock.audit.history import load_history, read_history
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.integration.fleet.conftest import Fleet, fleet_policy
from tests.integration.fleet.test_rolling import proposal_for
from tests.support import final, propose, replays_and_recorded


def own_setup(fleet: Fleet, root: Path, action: dict[str, Any], host_vars: dict[str, Any]) -> Settings:
    """The fleet's settings with a policy whose restart_service has `action`'s settings, and a
    copy of the playbook tree whose inventory gives web-2 `host_vars`."""
    doc = yaml.safe_load(fleet_policy({"batch": 1, "max_failed": 0}))
    doc["actions"]["restart_service"].update(action)
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    playbooks = root / "playbooks"
    shutil.copytree(
        fleet.settings.playbooks_dir, playbooks, ignore=shutil.ignore_patterns("artifacts", "__pycache__")
    )
    inventory = playbooks / "inventory" / "hosts.yml"
    hosts = yaml.safe_load(inventory.read_text())
    hosts["lab"]["hosts"]["web-2"].update(host_vars)
    inventory.write_text(yaml.safe_dump(hosts, sort_keys=False))
    return fleet.settings.model_copy(update={"policy_file": policy, "playbooks_dir": playbooks})


@pytest.mark.parametrize(
    ("host_vars", "name"),
    [
        # Nothing listens there: the connection is refused.
        ({"ansible_port": 1}, "unreachable"),
        # sshd answers, but allows another user only: authentication is refused.
        ({"ansible_user": "interlock-nobody"}, "unauthorised"),
    ],
)
async def test_a_host_the_preview_cannot_reach_ends_preview_failed_after_its_attempts(
    client: Client,
    fresh_fleet: Fleet,
    worker_for: Any,
    tmp_path: Path,
    host_vars: dict[str, Any],
    name: str,
) -> None:
    settings = own_setup(
        fresh_fleet, tmp_path, {"preview_retry": {"attempts": 2, "backoff": "1s"}}, host_vars
    )
    task_queue = await worker_for(settings)
    before = fresh_fleet.pids()
    proposal = proposal_for(fresh_fleet)

    await propose(client, settings, task_queue, proposal)
    done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.PREVIEW_FAILED, (done.status, done.reasons)
    [reason] = done.reasons
    assert reason.startswith("preview failed after 2 attempt(s): unreachable: web-2"), reason
    assert "web-1" not in reason and "web-3" not in reason
    assert done.decisions == [] and done.waiting_for is None
    assert fresh_fleet.pids() == before
    # Each attempt is on the timeline and in the audit trail, the second after the backoff.
    attempts = [t for t in done.timeline if t.note.startswith("preview attempt")]
    assert [t.note.split(":")[0] for t in attempts] == ["preview attempt 1 of 2", "preview attempt 2 of 2"]
    assert "next try in 1s" in attempts[0].note
    assert (attempts[1].at - attempts[0].at).total_seconds() >= 1
    history = await client.get_workflow_handle(proposal.proposal_id).fetch_history()
    audit = read_history(load_history(history.to_json(), proposal.proposal_id)).audit_events.values()
    tries = sorted(
        (e for e in audit if e["kind"] == EventKind.PREVIEW_ATTEMPT.value),
        key=lambda e: int(e["event_id"].split("/")[-2]),
    )
    assert [(e["data"]["attempt"], e["data"]["ok"]) for e in tries] == [(1, False), (2, False)]
    assert all("web-2" in e["data"]["reason"] for e in tries)
    finals = [e for e in audit if e["kind"] == EventKind.FINAL.value]
    assert [e["data"]["status"] for e in finals] == ["preview_failed"]
    if name == "unauthorised":
        await replays_and_recorded(client, proposal.proposal_id, "preview_failed")


async def test_a_declared_fact_the_preview_does_not_report_refuses_the_proposal(
    client: Client, fresh_fleet: Fleet, worker_for: Any, tmp_path: Path
) -> None:
    facts = {
        # Declared not nullable, but check mode reports null: the shape is wrong on every host.
        "pid": {"type": "int"},
        # Never reported by the playbook at all.
        "build": {"type": "str"},
        "previous_pid": {"type": "int", "nullable": True},
    }
    settings = own_setup(fresh_fleet, tmp_path, {"facts": facts}, {})
    task_queue = await worker_for(settings)
    proposal = proposal_for(fresh_fleet)

    state = await propose(client, settings, task_queue, proposal)

    assert state.status is ProposalStatus.REJECTED_BY_CHECKS, (state.status, state.reasons)
    [reason] = state.reasons
    assert reason.startswith("declared facts refused: "), reason
    for host in ("web-1", "web-2", "web-3"):
        assert f"{host}: fact 'pid': expected int, got null" in reason
        assert f"{host}: fact 'build': expected str, not reported" in reason
    assert "previous_pid" not in reason
    assert state.decisions == [] and state.waiting_for is None
    # What each host did report, typed, is on the preview for the approver's record.
    assert state.preview is not None
    assert set(state.preview.host_facts) == {"web-1", "web-2", "web-3"}
    assert all(isinstance(f["previous_pid"], int) for f in state.preview.host_facts.values())

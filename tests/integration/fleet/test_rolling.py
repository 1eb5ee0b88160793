"""Rolling execution over real SSH hosts: batch by batch, a failed batch rolls back exactly the
hosts already changed, the catalog narrows the target, and the inventory is part of the plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

from interlock.examples import example_proposal
from interlock.models import BatchStatus, ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import get_state, parse_proposal
from tests.integration.fleet.conftest import WORKER_SECRET, Fleet, artifact_text
from tests.support import approve, final, new_id, propose, replays_and_recorded


def proposal_for(fleet: Fleet, hosts: list[str] | None = None):  # type: ignore[no-untyped-def]
    doc = example_proposal("restart_service", proposal_id=new_id(), incident=new_id("INC"))
    if hosts is not None:
        doc["target"]["hosts"] = hosts
    return parse_proposal(doc, load_policy(fleet.settings.effective_policy_file))


async def test_a_rolling_restart_goes_one_host_at_a_time(
    client: Client, fresh_fleet: Fleet, fleet_worker: str
) -> None:
    before = fresh_fleet.pids()
    proposal = proposal_for(fresh_fleet)
    state = await propose(client, fresh_fleet.settings, fleet_worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.preview is not None and state.preview.plan is not None
    assert state.preview.plan.batches == [["web-1"], ["web-2"], ["web-3"]]
    assert {t.host for t in state.preview.changed_tasks} == {"web-1", "web-2", "web-3"}
    assert state.risk is not None
    hosts = next(f for f in state.risk.factors if f.name == "hosts")
    assert "3 of 3 host(s) of checkout-api" in hosts.detail and hosts.contribution > 0
    assert fresh_fleet.pids() == before  # check mode changed nothing

    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)
    await replays_and_recorded(client, proposal.proposal_id, "rolled_out_restart")
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    after = fresh_fleet.pids()
    assert all(after[h] not in (None, before[h]) for h in before), (before, after)
    assert done.execution is not None
    batches = done.execution.batches
    assert [b.hosts for b in batches] == [["web-1"], ["web-2"], ["web-3"]]
    assert [b.status for b in batches] == [BatchStatus.SUCCEEDED] * 3
    assert [r.host for b in batches for r in b.results] == ["web-1", "web-2", "web-3"]
    # One batch at a time: each batch's run started after the one before was verified.
    for prev, nxt in zip(batches, batches[1:], strict=False):
        assert prev.verification is not None and nxt.execution is not None
        assert prev.verification.finished_at <= nxt.execution.started_at
        assert {t.host for t in nxt.execution.tasks} == set(nxt.hosts)
    # show --json carries the batches, with each host's result.
    shown = json.loads(done.model_dump_json())
    assert shown["execution"]["batches"][1]["hosts"] == ["web-2"]
    assert shown["execution"]["batches"][1]["results"][0]["host"] == "web-2"

    # The worker's environment reached no playbook run: no secret in any artifact.
    artifacts = artifact_text(fresh_fleet.settings)
    assert "INTERLOCK_TEST_WORKER_SECRET" not in artifacts and WORKER_SECRET not in artifacts
    assert list(Path(fresh_fleet.settings.artifacts_dir).rglob("command")), "artifacts were written"


async def test_a_host_broken_by_the_restart_rolls_back_the_changed_hosts_only(
    client: Client, fresh_fleet: Fleet, fleet_worker: str
) -> None:
    fresh_fleet.lab.degrade("checkout-api", host="web-2", after_restart=True)
    before = fresh_fleet.pids()
    proposal = proposal_for(fresh_fleet)
    state = await propose(client, fresh_fleet.settings, fleet_worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons

    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)
    assert done.status is ProposalStatus.ROLLED_BACK, done.reasons
    after = fresh_fleet.pids()
    assert after["web-3"] == before["web-3"], "web-3 must never be touched"
    assert after["web-1"] != before["web-1"] and after["web-2"] != before["web-2"]
    assert all(v["healthy"] for v in fresh_fleet.lab.status()["services"]["checkout-api"]["hosts"].values())
    assert done.execution is not None
    statuses = [(b.hosts, b.status) for b in done.execution.batches]
    assert statuses == [
        (["web-1"], BatchStatus.ROLLED_BACK),
        (["web-2"], BatchStatus.ROLLED_BACK),
        (["web-3"], BatchStatus.NOT_RUN),
    ]
    # Rolled back newest first, each with its own host only.
    web1, web2, _ = done.execution.batches
    assert web2.rollback is not None and web1.rollback is not None
    assert web2.rollback.finished_at <= web1.rollback.started_at
    assert {t.host for t in web1.rollback.tasks} == {"web-1"}
    # Each host's line says where it ended: web-1 rolled back and verified, web-2 why it failed.
    assert [(r.host, r.stage.value, r.status) for r in web1.results] == [("web-1", "verify_rollback", "ok")]
    assert [(r.host, r.stage.value, r.status) for r in web2.results] == [("web-2", "verify", "failed")]
    assert any("web-2" in r for r in done.reasons[:1]), done.reasons
    assert "never touched: web-3" in done.reasons[-1]


async def test_target_hosts_narrow_the_change(client: Client, fresh_fleet: Fleet, fleet_worker: str) -> None:
    before = fresh_fleet.pids()
    proposal = proposal_for(fresh_fleet, hosts=["web-1"])
    state = await propose(client, fresh_fleet.settings, fleet_worker, proposal)
    assert state.preview is not None and state.preview.plan is not None
    assert state.preview.plan.batches == [["web-1"]]
    await approve(client, proposal.proposal_id)
    done = await final(client, proposal.proposal_id)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    after = fresh_fleet.pids()
    assert after["web-1"] != before["web-1"]
    assert (after["web-2"], after["web-3"]) == (before["web-2"], before["web-3"])


def test_an_unknown_host_is_refused_with_exit_2(fleet: Fleet, tmp_path: Path) -> None:
    doc = example_proposal("restart_service", proposal_id=new_id())
    doc["target"]["hosts"] = ["web-1", "web-9"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    env = {
        "PATH": str(Path(sys.executable).parent),
        "INTERLOCK_HOME": str(fleet.settings.home_dir),
        "INTERLOCK_POLICY": str(fleet.settings.effective_policy_file),
        "TEMPORAL_ADDRESS": "127.0.0.1:1",  # refused before any connection
    }
    done = subprocess.run(
        [sys.executable, "-m", "interlock.cli", "propose", str(path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "'web-9' is not a host of checkout-api" in done.stderr


async def test_an_inventory_change_after_preview_voids_the_approval(
    client: Client, fresh_fleet: Fleet, fleet_worker: str
) -> None:
    inventory = fresh_fleet.settings.playbooks_dir / "inventory" / "hosts.yml"
    original = inventory.read_text()
    before = fresh_fleet.pids()
    proposal = proposal_for(fresh_fleet)
    state = await propose(client, fresh_fleet.settings, fleet_worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL
    first_hash = state.plan_hash
    try:
        # Someone points web-3 somewhere else after the approver read the plan.
        inventory.write_text(
            original.replace("ansible_connection: ssh", "ansible_connection: ssh\n      note: moved", 1)
        )
        await approve(client, proposal.proposal_id)
        again = await get_state(client, proposal.proposal_id)
        for _ in range(120):
            if again.plan_hash != first_hash and again.status is ProposalStatus.AWAITING_APPROVAL:
                break
            import asyncio

            await asyncio.sleep(0.5)
            again = await get_state(client, proposal.proposal_id)
        assert again.status is ProposalStatus.AWAITING_APPROVAL, again.status
        assert again.plan_hash != first_hash
        assert fresh_fleet.pids() == before, "nothing may run on a plan nobody approved"
    finally:
        inventory.write_text(original)
        await client.get_workflow_handle(proposal.proposal_id).terminate("test over")

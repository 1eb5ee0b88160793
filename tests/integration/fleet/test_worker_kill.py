"""A worker SIGKILLed between two batches of a rolling restart over real SSH, and a new one
started: the rollout resumes at the next unfinished batch, and no host is restarted twice (the
lab's changes.jsonl holds one restart per host for the proposal). The worker is a real
`interlock worker` process in its own process group, so the kill takes its Ansible runs too."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client

from bench.stack import kill_process, start_worker_process
from interlock.examples import example_proposal
from interlock.keys import ensure_dev_keys
from interlock.models import BatchStatus, ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import get_state, parse_proposal, submit, wait_until_settled
from tests.integration.fleet.conftest import Fleet, fleet_policy
from tests.support import approve, final, new_id

pytestmark = pytest.mark.timeout(900)


def worker_env_of(fleet: Fleet, policy: Path) -> dict[str, str]:
    s = fleet.settings
    return {
        "INTERLOCK_POLICY": str(policy),
        "INTERLOCK_PLAYBOOKS": str(s.playbooks_dir),
        "INTERLOCK_SSH_KEY_FILE": str(s.ssh_key_file),
        "INTERLOCK_SSH_KNOWN_HOSTS": str(s.ssh_known_hosts_file),
    }


def restarts(fleet: Fleet, proposal_id: str) -> Counter[str]:
    """The lab's recorded restarts of this proposal, per inventory host (the key's last part)."""
    counts: Counter[str] = Counter()
    path = fleet.lab.root / "changes.jsonl"
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        key = str(record.get("key", ""))
        if record.get("event") == "restart" and key.startswith(proposal_id.lower()):
            counts[key.rsplit(".", 1)[-1]] += 1
    return counts


async def test_a_worker_killed_between_batches_resumes_without_restarting_a_host_twice(
    client: Client, fresh_fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = fresh_fleet
    # A pause between batches long enough to kill the worker in it, reliably.
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet_policy({"batch": 1, "max_failed": 0, "pause": "30s"}))
    ensure_dev_keys(policy, fleet.settings.home_dir / "keys")
    for name, value in worker_env_of(fleet, policy).items():
        monkeypatch.setenv(name, value)
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    doc = example_proposal("restart_service", proposal_id=new_id(), incident=new_id("INC"))
    proposal = parse_proposal(doc, load_policy(policy))
    before = fleet.pids()

    log = tmp_path / "worker.log"
    settings = fleet.settings.model_copy(update={"policy_file": policy})
    worker = start_worker_process(settings, queue, log)
    try:
        await submit(client, proposal, queue, load_policy(policy))
        state = await wait_until_settled(client, proposal.proposal_id, timeout=300)
        assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
        await approve(client, proposal.proposal_id)
        # Batch 1 done (web-1 restarted and verified): the workflow now waits out the pause.
        for _ in range(300):
            s = await get_state(client, proposal.proposal_id)
            batches = s.execution.batches if s.execution else []
            if batches and batches[0].status is BatchStatus.SUCCEEDED:
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError(f"batch 1 never succeeded; worker log:\n{log.read_text()[-3000:]}")
        assert batches[1].status is BatchStatus.PENDING, batches
        kill_process(worker)
        assert restarts(fleet, proposal.proposal_id) == Counter({"web-1": 1})
        worker = start_worker_process(settings, queue, log)
        done = await final(client, proposal.proposal_id)
    finally:
        kill_process(worker)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert done.execution is not None
    assert [b.status for b in done.execution.batches] == [BatchStatus.SUCCEEDED] * 3
    # Every host restarted exactly once, the first before the kill, the others after it.
    assert restarts(fleet, proposal.proposal_id) == Counter({"web-1": 1, "web-2": 1, "web-3": 1})
    after = fleet.pids()
    assert all(after[h] not in (None, before[h]) for h in before), (before, after)

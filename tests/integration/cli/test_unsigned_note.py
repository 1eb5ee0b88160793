"""`interlock approve --as USER` without USER's private key on this machine: accepted where the
tier allows unsigned decisions, marked UNSIGNED, and the approver is told why and how to sign
(a team's own policy and keys folder start without keys)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from temporalio.client import Client

from interlock.keys import key_path
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.support import final, make_proposal, propose


async def test_an_unsigned_approval_says_why_and_how_to_sign(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab, tmp_path: Path
) -> None:
    proposal = make_proposal(settings)
    state = await propose(client, settings, worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.risk is not None and state.risk.tier.value == "low"
    key = key_path(settings.keys_dir, "alice")
    shutil.move(key, tmp_path / "alice.key")  # alice's key is not on this machine
    try:
        # Not subprocess.run: the worker shares this event loop and must answer the CLI.
        cli = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "interlock"),
            *("approve", proposal.proposal_id, "--as", "alice", "--reason", "checked"),
            env=cli_env(settings, worker),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 120)
    finally:
        shutil.move(tmp_path / "alice.key", key)
    assert cli.returncode == 0, err.decode()
    assert "approved by alice (UNSIGNED)" in out.decode()
    note = err.decode()
    assert f"no private key for alice at {key}" in note
    assert "interlock keys generate alice" in note and "roster" in note
    done = await final(client, proposal.proposal_id)
    assert [(d.approver, d.signed) for d in done.decisions or []] == [("alice", False)]

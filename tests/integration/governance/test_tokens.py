"""Signed approvals bound to the plan: each forged, replayed, stale or outdated token is refused.

Every refusal names the check that failed and leaves no Update event in the history.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client
from typer.testing import CliRunner

from interlock.cli import app
from interlock.keys import key_path
from interlock.lab import Lab
from interlock.models import DecisionInput, DecisionKind, ProposalStatus
from interlock.policy import Policy
from interlock.proposals import DecisionRefused, decide, get_state, sign_decision
from interlock.settings import Settings
from interlock.signing import TokenRefused, _b64, _unb64, generate_key, load_private_key, sign, verify
from interlock.worker.main import build_worker
from tests.conftest import cli_env
from tests.integration.governance.support import wait_for
from tests.support import final, make_proposal, propose, update_events


async def _token(settings: Settings, client: Client, proposal_id: str, approver: str = "alice") -> str:
    return await sign_decision(client, settings.keys_dir, proposal_id, "approve", approver, "checked")


async def _refused(client: Client, proposal_id: str, token: str, match: str) -> None:
    with pytest.raises(DecisionRefused, match=match):
        await decide(client, proposal_id, "approve", DecisionInput(token=token))


async def test_token_replayed_on_another_proposal_or_twice_is_refused(
    client: Client, settings: Settings, worker: str, lab: Lab
) -> None:
    first = make_proposal(settings, "change_access")
    other = make_proposal(settings, "change_access")
    await propose(client, settings, worker, first)
    await propose(client, settings, worker, other)

    token = await _token(settings, client, first.proposal_id, "carol")
    await _refused(client, other.proposal_id, token, f"binding: token is for proposal '{first.proposal_id}'")
    assert await update_events(client, other.proposal_id) == 0

    # Used once where it belongs, then replayed on the same proposal: the nonce is spent.
    await decide(client, first.proposal_id, "approve", DecisionInput(token=token))
    await _refused(client, first.proposal_id, token, r"nonce: token was already used \(replay\)")
    assert await update_events(client, first.proposal_id) == 2  # the one accepted Update
    assert [d.approver for d in (await get_state(client, first.proposal_id)).decisions] == ["carol"]
    for p in (first, other):
        await client.get_workflow_handle(p.proposal_id).terminate("test done")


async def test_token_signed_before_the_playbook_changed_never_runs_the_new_plan(
    client: Client,
    governed: Callable[..., Settings],
    settings: Settings,
    task_queue: str,
    fresh_lab: Lab,
    tmp_path: Path,
) -> None:
    playbooks = tmp_path / "playbooks"
    shutil.copytree(settings.playbooks_dir, playbooks, ignore=shutil.ignore_patterns("artifacts"))
    s = governed(playbooks_dir=playbooks)
    before = fresh_lab.status()["services"]["checkout-api"]["pid"]
    proposal = make_proposal(s, "restart_service")
    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        old_plan = state.plan_hash
        used = await _token(s, client, proposal.proposal_id)
        spare = await _token(s, client, proposal.proposal_id)

        # Someone edits the playbook after the approver looked at the preview.
        playbook = playbooks / "project" / "restart_service.yml"
        playbook.write_text(playbook.read_text() + "\n# edited after the preview was approved\n")

        # The approval lands, but the re-check before execution sees a different plan:
        # a new preview and a new approval, never an execution of what nobody saw.
        await decide(client, proposal.proposal_id, "approve", DecisionInput(token=used))
        state = await wait_for(
            client,
            proposal.proposal_id,
            lambda st: st.plan_hash != old_plan and st.status is ProposalStatus.AWAITING_APPROVAL,
        )
        assert state.execution is None
        assert any("playbooks changed after approval" in e.note for e in state.timeline)
        assert fresh_lab.status()["services"]["checkout-api"]["pid"] == before

        await _refused(client, proposal.proposal_id, spare, "plan: token approves a different plan")
        fresh = await _token(s, client, proposal.proposal_id)
        result = await decide(client, proposal.proposal_id, "approve", DecisionInput(token=fresh))
        assert result.status is ProposalStatus.EXECUTING
        done = await final(client, proposal.proposal_id)

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert [d.plan_hash for d in done.decisions] == [old_plan, done.plan_hash]
    assert fresh_lab.status()["services"]["checkout-api"]["pid"] != before


async def test_expired_token_is_refused(client: Client, settings: Settings, worker: str, lab: Lab) -> None:
    proposal = make_proposal(settings, "restart_service")
    state = await propose(client, settings, worker, proposal)
    issued = datetime.now(UTC) - timedelta(minutes=20)
    token = sign(
        load_private_key(key_path(settings.keys_dir, "alice")),
        proposal_id=proposal.proposal_id,
        workflow_id=state.workflow_id,
        plan_hash=state.plan_hash or "",
        decision=DecisionKind.APPROVE,
        approver="alice",
        reason="signed a while ago",
        now=issued,
        lifetime=timedelta(minutes=15),
    )
    await _refused(client, proposal.proposal_id, token, "expiry: token expired at")
    assert await update_events(client, proposal.proposal_id) == 0
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")


async def test_forged_or_altered_token_is_refused(
    client: Client, settings: Settings, worker: str, lab: Lab
) -> None:
    proposal = make_proposal(settings, "restart_service")
    state = await propose(client, settings, worker, proposal)
    # A token claiming to be alice's, signed with a key that is not hers.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem, _ = generate_key()
    wrong_key = load_pem_private_key(pem.encode(), password=None)
    forged = sign(
        wrong_key,  # type: ignore[arg-type]
        proposal_id=proposal.proposal_id,
        workflow_id=state.workflow_id,
        plan_hash=state.plan_hash or "",
        decision=DecisionKind.APPROVE,
        approver="alice",
        reason="trust me",
        now=datetime.now(UTC),
    )
    await _refused(client, proposal.proposal_id, forged, "signature: not made with alice's key")

    # alice's real token with the approver swapped to bob: the signature no longer matches.
    genuine = await _token(settings, client, proposal.proposal_id, "alice")
    payload, signature = genuine.split(".")
    altered = _unb64(payload).replace(b'"approver":"alice"', b'"approver":"bob"')
    tampered = f"{_b64(altered)}.{signature}"
    await _refused(client, proposal.proposal_id, tampered, "signature: not made with bob's key")
    assert await update_events(client, proposal.proposal_id) == 0
    assert (await get_state(client, proposal.proposal_id)).decisions == []
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")


# --- Token lifetime: `expires_at - issued_at` at most the policy's token_max_lifetime --------


def _signed_for(lifetime: timedelta, now: datetime) -> tuple[str, str]:
    pem, public = generate_key()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(pem.encode(), password=None)
    token = sign(
        key,  # type: ignore[arg-type]
        proposal_id="p",
        workflow_id="p",
        plan_hash="h",
        decision=DecisionKind.APPROVE,
        approver="alice",
        reason="r",
        now=now,
        lifetime=lifetime,
    )
    return token, public


def test_a_token_valid_for_longer_than_the_limit_is_refused() -> None:
    now = datetime.now(UTC)
    token, public = _signed_for(timedelta(days=365), now)
    check = {
        "public_keys": {"alice": public},
        "proposal_id": "p",
        "workflow_id": "p",
        "plan_hash": "h",
        "now": now,
        "seen_nonces": frozenset(),
    }
    refusal = r"^lifetime: token is valid for 365d .* token_max_lifetime of 15m$"
    with pytest.raises(TokenRefused, match=refusal):
        verify(token, **check)  # type: ignore[arg-type]
    # The limit is the policy's: a longer one lets it through, a shorter one refuses 15 minutes.
    assert verify(token, **check, max_lifetime=timedelta(days=366)).approver == "alice"  # type: ignore[arg-type]
    fifteen, public = _signed_for(timedelta(minutes=15), now)
    check["public_keys"] = {"alice": public}
    assert verify(fifteen, **check).approver == "alice"  # type: ignore[arg-type]
    with pytest.raises(TokenRefused, match="lifetime: token is valid for 15m"):
        verify(fifteen, **check, max_lifetime=timedelta(minutes=5))  # type: ignore[arg-type]


def test_the_policy_names_the_limit_and_bounds_it(settings: Settings) -> None:
    doc = yaml.safe_load((settings.home_dir / "policy.yaml").read_text())
    assert Policy.model_validate(doc).token_max_lifetime == timedelta(minutes=15)
    shorter = Policy.model_validate({**doc, "token_max_lifetime": "5m"})
    assert shorter.token_max_lifetime == timedelta(minutes=5)
    with pytest.raises(ValueError, match="token_max_lifetime: must be at most 24h"):
        Policy.model_validate({**doc, "token_max_lifetime": "30d"})


def test_interlock_sign_refuses_to_make_a_token_longer_than_the_limit(settings: Settings) -> None:
    env = cli_env(settings, "no-worker-needed")
    result = CliRunner().invoke(app, ["sign", "prop-x", "--as", "alice", "--lifetime", "2h"], env=env)
    assert result.exit_code == 2
    assert "error: --lifetime 2h is longer than the policy's token_max_lifetime of 15m" in result.stderr


async def test_a_long_lived_token_is_refused_by_the_update_validator(
    client: Client, settings: Settings, worker: str, lab: Lab
) -> None:
    proposal = make_proposal(settings, "restart_service")
    state = await propose(client, settings, worker, proposal)
    # alice's own key, this proposal, this plan, fresh: only its lifetime is wrong.
    token = sign(
        load_private_key(key_path(settings.keys_dir, "alice")),
        proposal_id=proposal.proposal_id,
        workflow_id=state.workflow_id,
        plan_hash=state.plan_hash or "",
        decision=DecisionKind.APPROVE,
        approver="alice",
        reason="valid for a year",
        now=datetime.now(UTC),
        lifetime=timedelta(days=365),
    )
    await _refused(client, proposal.proposal_id, token, "lifetime: token is valid for 365d")
    assert await update_events(client, proposal.proposal_id) == 0
    assert (await get_state(client, proposal.proposal_id)).decisions == []
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")

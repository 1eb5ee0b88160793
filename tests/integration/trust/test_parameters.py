"""Playbooks get only what the action declares: the execution activity itself checks every
parameter, whoever started the workflow and whatever the policy says."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from interlock.activities.ansible import PlaybookRunner, declared_parameters, playbook_variables
from interlock.governance import RemediationRun
from interlock.lab import Lab
from interlock.models import PlaybookRun, ProposalStatus, Stage
from interlock.policy import load_policy
from interlock.settings import Settings
from tests.integration.trust.support import lab_changes, now, start_by_hand, wait_status
from tests.support import make_proposal, new_id

PLAYBOOKS = Path(__file__).parents[3] / "playbooks" / "project"


def test_every_variable_the_shipped_playbooks_define_is_found() -> None:
    names = playbook_variables(PLAYBOOKS)
    # play vars, task vars, register and set_fact, across the tree (tasks/ included)
    assert {"lab_config", "health_retries", "interlock_state_dir", "health", "restart_outcome"} <= names
    # a parameter the rollback action declares is not one of them
    assert "release" not in names


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        ({"release": "v1", "health_retries": "0"}, "'health_retries' is reserved"),
        ({"release": "v1", "ansible_python_interpreter": "x"}, "'ansible_python_interpreter' is reserved"),
        ({"release": "v1", "interlock_change_id": "x"}, "'interlock_change_id' is reserved"),
        ({"release": "v1", "previous_release": "v0"}, "'previous_release' is reserved"),
        ({"release": "v1", "colour": "red"}, "'colour' is not a parameter of rollback_deployment"),
        ({"release": "v9"}, "release='v9' is not allowed"),
        ({}, "'release' is required"),
    ],
)
def test_the_activity_refuses_what_the_action_does_not_declare(
    settings: Settings, parameters: dict[str, str], refusal: str
) -> None:
    action = load_policy(settings.effective_policy_file).actions["rollback_deployment"]
    with pytest.raises(ApplicationError) as exc:
        declared_parameters(parameters, "rollback_deployment", action, playbook_variables(PLAYBOOKS))
    assert refusal in str(exc.value)
    assert exc.value.non_retryable


def test_a_policy_declaring_a_playbook_variable_does_not_make_it_settable(settings: Settings) -> None:
    action = load_policy(settings.effective_policy_file).actions["restart_service"]
    widened = type(action).model_validate(
        {**action.model_dump(), "parameters": {"lab_config": {"allowed": ["x"]}}}
    )
    with pytest.raises(ApplicationError, match="'lab_config' is reserved"):
        declared_parameters({"lab_config": "x"}, "restart_service", widened, playbook_variables(PLAYBOOKS))


def run_of(stage: Stage, **kw: object) -> PlaybookRun:
    return PlaybookRun.model_validate(
        {"proposal_id": "p-1", "action": "restart_service", "stage": stage, "service": "checkout-api",
         "parameters": {}, **kw}
    )  # fmt: skip


def test_lab_variables_reach_only_an_action_that_declares_them(settings: Settings) -> None:
    runner = PlaybookRunner(settings)
    action = load_policy(settings.effective_policy_file).actions["restart_service"]
    assert action.lab_vars
    lab = runner.extra_vars(run_of(Stage.EXECUTE), action, "d")
    assert lab["lab_root"] == str(settings.lab_dir) and "service_manager" in lab
    own = runner.extra_vars(run_of(Stage.EXECUTE), action.model_copy(update={"lab_vars": False}), "d")
    assert "lab_root" not in own and "service_manager" not in own
    assert set(own) == {"service", "interlock_change_id", "interlock_direction"}


def test_facts_reach_verify_and_rollback_per_host_and_are_checked_at_the_door(settings: Settings) -> None:
    runner = PlaybookRunner(settings)
    action = load_policy(settings.effective_policy_file).actions["restart_service"]
    facts = {"web-1": {"previous_pid": 11, "pid": 12}, "web-2": {"previous_pid": None, "pid": 22}}
    verify = runner.extra_vars(run_of(Stage.VERIFY, host_facts=facts, hosts=["web-1", "web-2"]), action, "d")
    assert verify["interlock_facts"] == facts
    # A run playbook never receives facts: it reports them.
    assert "interlock_facts" not in runner.extra_vars(run_of(Stage.EXECUTE, host_facts=facts), action, "d")
    for given, refusal in [
        ({"web-1": {"previous_pid": "11"}}, "web-1: fact 'previous_pid': expected int or null, got str"),
        ({"web-1": {"shell": "x"}}, "web-1: fact 'shell': not declared"),
        ({"web-3": {"pid": 1}}, "web-3: not a host of this run (web-1, web-2)"),
    ]:
        with pytest.raises(ApplicationError) as exc:
            runner.extra_vars(run_of(Stage.ROLLBACK, host_facts=given, hosts=["web-1", "web-2"]), action, "d")
        assert exc.value.message == f"facts refused: {refusal}" and exc.value.non_retryable


async def test_a_hand_started_proposal_cannot_reach_ansible_with_a_playbook_variable(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    pid = new_id()
    before = lab_changes(alerting_lab)
    # A valid proposal model (names are safe), but not what restart_service declares.
    proposal = make_proposal(settings, proposal_id=pid).model_copy(
        update={"parameters": {"health_retries": "0"}}
    )
    await start_by_hand(client, worker, pid, RemediationRun(proposal=proposal, submitted_at=now()))
    state = await wait_status(client, pid, *(s.value for s in ProposalStatus if s.is_final))
    assert state.status is ProposalStatus.REJECTED_BY_CHECKS
    assert "health_retries" in " ".join(state.reasons)
    # Refused before ansible-runner was called: it never wrote an artifact for this proposal.
    assert not (settings.artifacts_dir / pid).exists()
    assert lab_changes(alerting_lab) == before

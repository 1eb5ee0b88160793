"""`interlock example ACTION` for every action of the policy in force: its output goes through
`interlock propose -` unchanged; a value off an allow-list, an unknown host or action is refused
with exit 2 and one line naming it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client
from typer.testing import CliRunner

from interlock.cli import app
from interlock.lab import Lab
from interlock.policy import default_policy_text, load_policy, parse_policy
from interlock.proposals import parse_proposal
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.support import new_id

DEFAULT_ACTIONS = list(parse_policy(default_policy_text()).actions)


def example(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["example", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("action", DEFAULT_ACTIONS)
async def test_every_default_action_goes_from_example_to_propose_unchanged(
    client: Client, settings: Settings, worker: str, checkout_degraded: Lab, action: str
) -> None:
    env = cli_env(settings, worker)
    proposal_id = new_id(action.replace("_", "-"))
    code, printed, err = await asyncio.to_thread(
        example, env, action, "--id", proposal_id, "--incident", new_id("INC")
    )
    assert code == 0, err

    # In a thread: each command runs its own event loop.
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["propose", "-", "--no-wait", "--json"], input=printed, env=env
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["proposal_id"] == proposal_id
    described = await client.get_workflow_handle(proposal_id).describe()
    assert described.id == proposal_id
    doc = json.loads(printed)
    assert doc["action"] == action
    declared = load_policy(settings.effective_policy_file).actions[action].parameters
    assert set(doc["parameters"]) == set(declared)


def own_policy(tmp_path: Path) -> Path:
    """A team's policy: an action of its own with two parameters, a Prometheus source, a service
    on three hosts in production."""
    doc = yaml.safe_load(default_policy_text())
    doc["environments"]["production"] = {"risk": 25}
    doc["services"] = {
        "payments-api": {
            "owner": "payments",
            "environments": ["production"],
            "hosts": {"production": ["pay-1", "pay-2", "pay-3"]},
        }
    }
    doc["sources"] = {
        "prometheus": {
            "kind": "prometheus",
            "url": "http://prometheus.invalid:9090",
            "checks": {
                "latency_high": {
                    "query": 'p99{app="$service"}',
                    "above": 0.5,
                    "description": "p99 above 500 ms.",
                }
            },
        }
    }
    doc["actions"] = {
        "drain_queue": {
            "owner": "sre",
            "base_risk": 10,
            "description": "Drain a worker queue.",
            "playbooks": {"run": "drain.yml", "verify": "drain_verify.yml", "rollback": "drain_rollback.yml"},
            "parameters": {
                "queue": {"allowed": ["invoices", "refunds"]},
                "mode": {"allowed": ["soft", "hard"]},
            },
            "evidence_sources": {"prometheus": {"max_age": "30m"}},
        }
    }
    doc["modes"], doc["graduation"], doc["recommenders"] = [], [], {}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_an_action_of_a_teams_own_policy_takes_its_values_from_the_policy(
    settings: Settings, tmp_path: Path
) -> None:
    path = own_policy(tmp_path)
    env = {**cli_env(settings, "unused"), "INTERLOCK_POLICY": str(path)}

    code, printed, err = example(
        env, "drain_queue", "--param", "mode=hard", "--host", "pay-2", "--host", "pay-3"
    )

    assert code == 0, err
    doc = json.loads(printed)
    assert doc["target"] == {
        "service": "payments-api",
        "environment": "production",
        "hosts": ["pay-2", "pay-3"],
    }
    assert doc["parameters"] == {"queue": "invoices", "mode": "hard"}
    assert [(e["source"], e["ref"]) for e in doc["evidence"]] == [("prometheus", "latency_high")]
    # What `interlock propose -` checks before it starts anything.
    proposal = parse_proposal(printed, load_policy(path))
    assert proposal.target.hosts == ["pay-2", "pay-3"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (
            ["drain_queue", "--param", "mode=nuke"],
            "mode='nuke' is not allowed for drain_queue (allowed: soft, hard)",
        ),
        (["drain_queue", "--param", "force=yes"], "'force' is not a parameter of drain_queue"),
        (["drain_queue", "--param", "mode"], "expected NAME=VALUE"),
        (["drain_queue", "--host", "pay-9"], "'pay-9' is not a host of payments-api"),
        (["drain_queue", "--service", "billing"], "service 'billing' is not in the catalog"),
        (["drain_queue", "--environment", "lab"], "payments-api does not run in 'lab'"),
        (["restart_service"], "unknown action 'restart_service' (actions: drain_queue)"),
    ],
)
def test_a_choice_the_policy_does_not_allow_is_one_line_and_exit_2(
    settings: Settings, tmp_path: Path, args: list[str], named: str
) -> None:
    env = {**cli_env(settings, "unused"), "INTERLOCK_POLICY": str(own_policy(tmp_path))}

    code, printed, err = example(env, *args)

    assert code == 2 and printed == ""
    assert err.count("\n") == 1 and named in err, err

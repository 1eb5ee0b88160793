"""`interlock audit replay` on the committed histories, and its refusals of bad input; bulk
replay (`replay_many`, what `--all` runs) in one process and spread over processes.

All but the last run without a server: an auditor's machine has only the exported file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHistory
from typer.testing import CliRunner

from interlock.audit.history import NOT_STARTED, load_history, replay_many
from interlock.cli import app
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.integration.audit.workflow_support import interlock, wait_for
from tests.support import make_proposal, propose

HISTORIES = Path(__file__).resolve().parents[2] / "histories"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", "replay", *args], env={"COLUMNS": "250"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("name", "outcome"),
    [("approved_restart", "completed"), ("rejected_rollback", "rejected"), ("rolled_back_v0", "rolled_back")],
)
def test_committed_histories_replay_with_their_timeline(name: str, outcome: str) -> None:
    code, output = run("--history", str(HISTORIES / f"{name}.json"))
    assert code == 0, output
    assert "replay: OK" in output
    assert "submitted" in output and "check_proposal" in output and "run_playbook" in output
    assert f"{outcome}:" in output
    assert "decision: " in output


def test_json_output(tmp_path: Path) -> None:
    code, output = run("--history", str(HISTORIES / "approved_restart.json"), "--json")
    assert code == 0
    report = json.loads(output)
    assert report["deterministic"] is True and report["error"] is None
    whats = [item["what"] for item in report["timeline"]]
    assert whats[0] == "submitted" and whats[-1] == "final"
    assert "decision: approve" in whats


def changed_history() -> dict[str, Any]:
    """approved_restart with its first playbook activity renamed: the code no longer matches it."""
    doc = json.loads((HISTORIES / "approved_restart.json").read_text())
    for event in doc["events"]:
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs and attrs["activityType"]["name"] == "run_playbook":
            attrs["activityType"]["name"] = "run_something_else"
            break
    return doc


def test_a_changed_history_fails(tmp_path: Path) -> None:
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(changed_history()))
    code, output = run("--history", str(changed))
    assert code == 1
    assert "replay: FAILED" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one of --history FILE, --workflow-id ID or --all"),
        (["--history", "x.json", "--all"], "give exactly one of"),
        (["--history", "x.json", "--since", "1d"], "--since goes with --all"),
        (["--all", "--since", "soon"], "not a duration"),
        (["--history", "x.json", "--jobs", "2"], "--jobs and --sandboxed go with --all"),
        (["--history", "x.json", "--sandboxed"], "--jobs and --sandboxed go with --all"),
        (["--all", "--jobs", "0"], "Invalid value for '--jobs'"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    code, output = run(*args)
    assert code == 2 and message in output


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "notjson.json").write_text("{")
    (tmp_path / "empty.json").write_text('{"events": []}')
    code, output = run("--history", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in output
    code, output = run("--history", str(tmp_path / "notjson.json"))
    assert code == 2 and "not JSON" in output
    code, output = run("--history", str(tmp_path / "empty.json"))
    assert code == 2 and "temporal workflow show --output json" in output


# --- Bulk replay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "sandboxed"),
    [(1, False), (2, False), (1, True)],
    ids=["one-process", "two-processes", "one-process-sandboxed"],
)
async def test_replay_many_reports_exactly_the_changed_history(jobs: int, sandboxed: bool) -> None:
    committed = [load_history(p.read_text(), p.stem) for p in sorted(HISTORIES.glob("*.json"))]
    # Under its own workflow id (the proposal's), as an auditor's export would have it.
    changed = load_history(json.dumps(changed_history()), "changed")
    # The changed one in the middle, and more histories than processes: the outcomes come back
    # from several chunks and must be put back in order.
    histories = committed[:2] + [changed] + committed[2:] + committed

    outcomes = await replay_many(histories, jobs=jobs, sandboxed=sandboxed)

    assert [(o.workflow_id, o.run_id) for o in outcomes] == [(h.workflow_id, h.run_id) for h in histories]
    failed = [o for o in outcomes if not o.ok]
    assert [(o.workflow_id, o.run_id) for o in failed] == [(changed.workflow_id, changed.run_id)]
    assert failed[0].error is not None
    assert "NondeterminismError" in failed[0].error and "run_something_else" in failed[0].error
    assert all(o.error is None for o in outcomes if o is not failed[0])


async def test_replay_many_refuses_a_history_without_its_start() -> None:
    doc = json.loads((HISTORIES / "rejected_rollback.json").read_text())
    headless = WorkflowHistory.from_json("headless", {"events": doc["events"][1:]})
    whole = load_history(json.dumps(doc), "whole")

    outcomes = await replay_many([headless, whole], jobs=1)

    assert [(o.workflow_id, o.ok) for o in outcomes] == [("headless", False), (whole.workflow_id, True)]
    assert outcomes[0].error == f"not replayed: {NOT_STARTED}"


async def test_replay_all_on_the_server_in_two_processes(
    client: Client, settings: Settings, worker: str, fresh_lab: Lab
) -> None:
    # The lab is healthy, so the checks reject these at once: closed histories without Ansible.
    proposals = [make_proposal(settings, "restart_service") for _ in range(2)]
    for p in proposals:
        state = await propose(client, settings, worker, p)
        assert state.status is ProposalStatus.REJECTED_BY_CHECKS
        await client.get_workflow_handle(p.proposal_id).result()
    ids = [p.proposal_id for p in proposals]
    query = " OR ".join(f'WorkflowId = "{i}"' for i in ids)

    async def listed_as_closed() -> bool:
        closed = [wf async for wf in client.list_workflows(f'({query}) AND ExecutionStatus != "Running"')]
        return len(closed) == len(ids)

    await wait_for(listed_as_closed, what="visibility to list both as closed")

    code, output = await interlock(settings, "audit", "replay", "--all", "--jobs", "2", "--json")

    assert code == 0, output
    report = json.loads(output)
    assert report["failed"] == 0 and report["sandboxed"] is False
    assert report["replayed"] == len(report["results"]) >= 2
    by_id = {r["workflow_id"]: r for r in report["results"]}
    for i in ids:
        assert by_id[i]["ok"] is True and by_id[i]["error"] is None and by_id[i]["run_id"]

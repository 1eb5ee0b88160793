"""`interlock audit replay --history` on the committed histories, and its refusals of bad input.

These run without a server: an auditor's machine has only the exported file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interlock.cli import app

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


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


def test_a_changed_history_fails(tmp_path: Path) -> None:
    doc = json.loads((HISTORIES / "approved_restart.json").read_text())
    for event in doc["events"]:
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs and attrs["activityType"]["name"] == "run_playbook":
            attrs["activityType"]["name"] = "run_something_else"
            break
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc))
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

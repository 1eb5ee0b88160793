"""`interlock policy check FILE`: every error in one run, each with its path; exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from interlock.cli import app
from interlock.policy import default_policy_text

runner = CliRunner()


def _write(tmp_path: Path, edit: Any) -> Path:
    doc = yaml.safe_load(default_policy_text())
    edit(doc)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _broken(doc: dict[str, Any]) -> None:
    del doc["services"]["storefront"]["owner"]  # no owner
    del doc["actions"]["change_access"]["owner"]
    doc["roster"]["alice"]["groups"] = ["sre", "night-shift"]  # unknown group
    doc["approval_rules"] = {
        "low": {"approvals": 1, "unsigned_allowed": True},
        "medium": {"approvals": 1, "unsigned_allowed": True, "escalate_after": "-30m"},  # negative
        "high": {"approvals": 2, "require_owner": True, "expire_after": -3600},
        "critical": {"approvals": 2, "require_group": "secops"},  # unknown group
    }


EXPECTED = [
    "services.storefront.owner: missing field",
    "actions.change_access.owner: missing field",
    "approval_rules.medium.escalate_after: duration must be positive, got '-30m'",
    "approval_rules.high.expire_after: duration must be positive, got -3600",
    "roster.alice.groups: unknown group 'night-shift'",
    "approval_rules.critical.require_group: unknown group 'secops'",
]


def test_policy_check_reports_every_error_with_its_path(tmp_path: Path) -> None:
    path = _write(tmp_path, _broken)
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {path}: {line}" for line in EXPECTED]

    as_json = runner.invoke(app, ["policy", "check", str(path), "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout) == {"valid": False, "errors": EXPECTED}


def test_policy_check_reports_reference_errors_of_an_otherwise_valid_file(tmp_path: Path) -> None:
    def unknown_names(doc: dict[str, Any]) -> None:
        doc["services"]["storefront"]["owner"] = "web"
        doc["emergency_group"] = "firefighters"
        doc["freezes"] = [{"name": "black-friday", "days": ["fri"], "actions": ["reboot"]}]

    path = _write(tmp_path, unknown_names)
    result = runner.invoke(app, ["policy", "check", str(path), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["errors"] == [
        "services.storefront.owner: unknown group 'web'",
        "freezes.0.actions: unknown action 'reboot'",
        "emergency_group: unknown group 'firefighters'",
    ]


def test_policy_check_accepts_the_default_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(default_policy_text())
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "valid (version v1-" in result.stdout

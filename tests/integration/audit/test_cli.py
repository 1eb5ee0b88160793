"""`interlock audit verify|timeline` and `interlock metrics`, run as a person or a script would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from interlock.audit import open_store
from interlock.audit.cli import audit_app, metrics_command
from interlock.settings import Settings
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import lifecycle

# Mounted as the lead mounts them in interlock/cli.py.
app = typer.Typer()
app.add_typer(audit_app, name="audit")
app.command("metrics")(metrics_command)


@pytest.fixture
def env(backend: Backend, tmp_path: Path) -> dict[str, str | None]:
    home = tmp_path  # the SQLite backend's file is tmp_path/audit.db, where Settings looks
    url = backend.url if backend.name == "postgresql" else None
    with open_store(Settings(home=home, database_url=url)) as store:
        for e in lifecycle("p-1") + lifecycle("p-2", start=1000, recommender="r2"):
            store.append(e)
    # Wide enough that rich does not fold the table cells the assertions look for.
    return {"INTERLOCK_HOME": str(home), "INTERLOCK_DATABASE_URL": url, "COLUMNS": "200"}


def invoke(env: dict[str, str | None], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_verify(env: dict[str, str | None], backend: Backend) -> None:
    code, stdout, _ = invoke(env, "audit", "verify")
    assert code == 0 and "audit chain intact: 10 events" in stdout

    backend.sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    backend.sql("DELETE FROM audit_events WHERE seq = 7")

    code, stdout, _ = invoke(env, "audit", "verify")
    assert code == 1
    assert "audit chain broken: 2 problem(s)" in stdout
    assert "p-1/decision/1" in stdout and "edited" in stdout and "deleted" in stdout

    code, stdout, _ = invoke(env, "audit", "verify", "--json")
    report = json.loads(stdout)
    assert code == 1 and not report["ok"]
    assert [(p["seq"], p["kind"]) for p in report["problems"]] == [(3, "edited"), (7, "deleted")]


def test_timeline(env: dict[str, str | None]) -> None:
    code, stdout, _ = invoke(env, "audit", "timeline", "p-2")
    assert code == 0
    for text in ("submitted", "evidence_checked", "approve by alice (person, signed)", "completed"):
        assert text in stdout

    code, stdout, _ = invoke(env, "audit", "timeline", "p-2", "--json")
    events = json.loads(stdout)
    assert [e["seq"] for e in events] == [6, 7, 8, 9, 10]
    assert events[2]["data"]["human"] is True

    code, stdout, stderr = invoke(env, "audit", "timeline", "nope")
    assert code == 1 and stderr == "error: no audit events for proposal 'nope'\n"


def test_metrics(env: dict[str, str | None]) -> None:
    code, stdout, _ = invoke(env, "metrics", "--by", "recommender")
    assert code == 0 and "r2" in stdout and "MTTR" in stdout

    code, stdout, _ = invoke(env, "metrics", "--json")
    metrics = json.loads(stdout)
    assert metrics["overall"]["proposals"] == 2
    assert metrics["overall"]["mttr_mean_seconds"] == pytest.approx(120)

    code, stdout, _ = invoke(env, "metrics", "--since", "7d", "--json")
    assert code == 0 and json.loads(stdout)["overall"]["proposals"] == 0  # all in 2026-03


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["metrics", "--since", "soon"], "error: not a duration: 'soon' (use e.g. 30m, 24h, 7d)\n"),
        (
            ["metrics", "--by", "colour"],
            "error: --by must be one of recommender, model, action, channel, not 'colour'\n",
        ),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    code, _, stderr = invoke({"INTERLOCK_HOME": str(tmp_path)}, *args)
    assert (code, stderr) == (2, message)


def test_an_unreachable_store_is_one_line(tmp_path: Path) -> None:
    env = {
        "INTERLOCK_HOME": str(tmp_path),
        "INTERLOCK_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/test",
    }
    code, stdout, stderr = invoke(env, "audit", "verify")
    assert code == 1 and stdout == ""
    assert stderr.startswith("error: cannot migrate the audit store: ")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr

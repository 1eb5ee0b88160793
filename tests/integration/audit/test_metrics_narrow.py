"""`interlock metrics` at 80 columns: every number and name whole, no line wider than the
terminal; `--json` is the same at any width."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import interlock.cli as cli
from interlock.audit import open_store
from interlock.settings import Settings
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import lifecycle


@pytest.fixture
def env(backend: Backend, tmp_path: Path) -> dict[str, str | None]:
    url = backend.url if backend.name == "postgresql" else None
    with open_store(Settings(home=tmp_path, database_url=url)) as store:
        for e in lifecycle("p-1") + lifecycle("p-2", start=1000, recommender="model-review-bot"):
            store.append(e)
    return {"INTERLOCK_HOME": str(tmp_path), "INTERLOCK_DATABASE_URL": url}


def _run(env: dict[str, str | None], columns: int, *args: str) -> str:
    result = CliRunner().invoke(cli.app, list(args), env={**env, "COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_metrics_at_80_columns_keep_every_number_whole(env: dict[str, str | None]) -> None:
    wide = _run(env, 250, "metrics", "--by", "recommender")
    narrow = _run(env, 80, "metrics", "--by", "recommender")
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert max(len(line) for line in wide.splitlines()) > 80  # the wide form did not fit
    # Each metric is a row with its whole name, each group a column with its whole name.
    for name in ("proposals", "MTTR mean", "1st response", "oldest open", "false rec.", "exceptions"):
        assert any(line.lstrip().startswith(name) for line in narrow.splitlines()), name
    assert "model-review-bot" in narrow and "all" in narrow
    at_80, at_250 = (json.loads(_run(env, c, "metrics", "--json")) for c in (80, 250))
    assert {**at_80, "generated_at": None} == {**at_250, "generated_at": None}

"""Recommender tokens: shown once, stored as hashes, revocable; and `interlock tokens`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from interlock.tokens import TokenStore, hash_token, tokens_app


def test_tokens_authenticate_their_recommender_until_revoked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "intake.db")
    first, second = store.create("triage-bot"), store.create("triage-bot")
    other = store.create("deploy-bot")

    assert first.startswith("ilk_") and len(first) == len("ilk_") + 43
    assert store.authenticate(first) == store.authenticate(second) == "triage-bot"
    assert store.authenticate(other) == "deploy-bot"
    assert store.authenticate(first + "x") is None
    assert store.authenticate("ilk_" + "A" * 500) is None

    assert store.revoke(first)
    assert not store.revoke(first)  # already revoked
    assert store.authenticate(first) is None
    assert store.authenticate(second) == "triage-bot"

    other_id = next(t.id for t in store.list() if t.recommender == "deploy-bot")
    assert store.revoke(other_id)
    assert store.authenticate(other) is None
    assert store.revoke_all("triage-bot") == 1
    assert store.authenticate(second) is None
    assert all(not t.active for t in store.list())


def test_only_hashes_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "intake.db"
    store = TokenStore(path)
    token = store.create("triage-bot")
    store.engine.dispose()

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, recommender, token_hash FROM recommender_tokens").fetchall()
    assert rows and rows[0][2] == hash_token(token)
    assert token not in path.read_bytes().decode("latin-1")
    assert "token_hash" not in json.dumps([t.as_json() for t in TokenStore(path).list()])


@pytest.mark.parametrize("name", ["", "bad name", "a/b", "ansible_bot", "x" * 64, "{{evil}}"])
def test_recommender_names_must_be_safe(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        TokenStore(tmp_path / "intake.db").create(name)


def test_tokens_command_prints_the_token_once(tmp_path: Path) -> None:
    app = typer.Typer()
    app.add_typer(tokens_app, name="tokens")
    runner = CliRunner()
    env = {"INTERLOCK_HOME": str(tmp_path)}

    created = runner.invoke(app, ["tokens", "create", "triage-bot", "--json"], env=env)
    assert created.exit_code == 0, created.output
    issued = json.loads(created.stdout)
    assert TokenStore(tmp_path / "intake.db").authenticate(issued["token"]) == "triage-bot"

    listed = runner.invoke(app, ["tokens", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert issued["token"] not in listed.stdout
    assert [t["id"] for t in json.loads(listed.stdout)] == [issued["id"]]

    table = runner.invoke(app, ["tokens", "list"], env=env)
    assert issued["id"] in table.stdout and issued["token"] not in table.stdout

    human = runner.invoke(app, ["tokens", "create", "deploy-bot"], env=env)
    assert human.exit_code == 0 and "ilk_" in human.stdout and "tok_" in human.stdout

    assert runner.invoke(app, ["tokens", "revoke", issued["id"]], env=env).exit_code == 0
    again = runner.invoke(app, ["tokens", "revoke", issued["id"]], env=env)
    assert again.exit_code == 1
    assert TokenStore(tmp_path / "intake.db").authenticate(issued["token"]) is None
    assert runner.invoke(app, ["tokens", "create", "bad name"], env=env).exit_code == 2

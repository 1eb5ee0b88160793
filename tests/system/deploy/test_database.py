"""The compose file's database steps against the real PostgreSQL: `interlock db migrate` as the
owner, then roles.sql and grants.sql with psql (as the interlock-grants job runs them), then the
restricted role works for the worker and cannot change audit rows."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from interlock.audit.store import AuditStore
from interlock.models import Pause, PauseScope
from interlock.pauses import PauseStore
from tests.integration.audit.conftest import PG_URL, app_role_lock, pg_dsn, with_options
from tests.integration.audit.sample import event
from tests.system.deploy.compose import ROOT, load_compose

GRANTS = load_compose()["services"]["interlock-grants"]


@pytest.fixture
def schema() -> Iterator[str]:
    with app_role_lock():
        yield from _schema()


def _schema() -> Iterator[str]:
    name = f"deploy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        created = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'interlock_app'").fetchone() is None
    try:
        yield name
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
            if created:
                conn.execute("DROP OWNED BY interlock_app")
                conn.execute("DROP ROLE IF EXISTS interlock_app")


def test_migrate_then_grants_give_the_worker_what_it_needs_and_no_more(schema: str, tmp_path: Path) -> None:
    owner_url = with_options(PG_URL, search_path=schema)
    migrate = subprocess.run(
        [str(Path(sys.executable).parent / "interlock"), "db", "migrate"],
        env={**os.environ, "INTERLOCK_DATABASE_URL": owner_url, "INTERLOCK_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "migrated postgresql" in migrate.stdout

    # The interlock-grants job's psql command, with the repository's files for its mounts.
    command = [str(c) for c in GRANTS["command"]]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in GRANTS["volumes"]}
    args = [
        f"--file={ROOT / mounts[c.split('=', 1)[1]]}" if c.startswith("--file=") else c
        for c in command
        if not c.startswith(("--host", "--username", "--dbname"))
    ]
    done = subprocess.run(
        [*args, pg_dsn()],
        env={**os.environ, "PGOPTIONS": f"-c search_path={schema}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    app_url = with_options(PG_URL, search_path=schema, role="interlock_app")
    with AuditStore(app_url, tmp_path / "head.json") as store:
        store.migrate()  # at head already: reads the version only
        assert not store.append(event("p-1", "submitted")).duplicate
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "interlock_app"
        for statement in (
            "UPDATE audit_events SET status = 'x'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
        ):
            with store.engine.begin() as conn, pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(statement))
        with store.engine.begin() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("CREATE TABLE sneaky (x int)"))
        assert store.verify().ok

    # The kill switch works as the same role: add a pause, end it.
    pauses = PauseStore(app_url)
    scope = PauseScope(service="checkout-api")
    pauses.add(Pause(scope=scope, reason="deploy test", by="ops", at=datetime.now(UTC)))
    assert [p.scope for p in pauses.active()] == [scope]
    assert pauses.resume(scope, "ops") == 1
    pauses.engine.dispose()

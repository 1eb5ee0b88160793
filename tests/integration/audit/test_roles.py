"""The application's PostgreSQL role (roles.sql) can append and read, and cannot change history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from interlock.audit.store import AuditStore
from tests.integration.audit.conftest import PG_URL, app_role_lock, pg_dsn, with_options
from tests.integration.audit.sample import event, lifecycle

ROLES_SQL = Path(__file__).resolve().parents[3] / "interlock" / "audit" / "roles.sql"


@pytest.fixture
def app_role(pg_schema: str, head_file: Path) -> Iterator[str]:
    """The schema migrated by its owner, with roles.sql applied; yields the app role's URL."""
    with app_role_lock():
        yield from _app_role(pg_schema, head_file)


def _app_role(pg_schema: str, head_file: Path) -> Iterator[str]:
    with AuditStore(with_options(PG_URL, search_path=pg_schema), head_file) as owner:
        owner.migrate()
        owner.append(event("p-0", "submitted"))
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        created = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'interlock_app'").fetchone() is None
        conn.execute(f'SET search_path TO "{pg_schema}"')
        conn.execute(ROLES_SQL.read_text())  # type: ignore[arg-type]
    try:
        yield with_options(PG_URL, search_path=pg_schema, role="interlock_app")
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{pg_schema}" CASCADE')
            if created:
                conn.execute("DROP OWNED BY interlock_app")
                conn.execute("DROP ROLE interlock_app")


def test_the_app_role_appends_but_cannot_update_or_delete(app_role: str, head_file: Path) -> None:
    with AuditStore(app_role, head_file) as app:
        app.migrate()  # already at head: only reads the version
        for e in lifecycle("p-1"):
            app.append(e)
        assert app.append(event("p-0", "submitted")).duplicate

        with app.engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "interlock_app"
        for statement in (
            "UPDATE audit_events SET status = 'completed' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 6",
            "TRUNCATE audit_events",
        ):
            with app.engine.begin() as conn, pytest.raises(ProgrammingError, match="permission"):
                conn.execute(text(statement))

        report = app.verify()
        assert report.ok and report.events == 6
        assert [e.seq for e in app.timeline("p-1")] == [2, 3, 4, 5, 6]

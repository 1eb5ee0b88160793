"""Audit store fixtures: every test runs on SQLite (a file in tmp_path) and on the real PostgreSQL.

Each PostgreSQL test gets a schema of its own, dropped afterwards, so tests leave nothing behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from interlock.audit.store import AuditStore

PG_URL = os.environ.get("INTERLOCK_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_dsn(url: str = PG_URL) -> str:
    """The URL as libpq takes it (no SQLAlchemy driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_options(url: str, **settings: str) -> str:
    """The URL with server settings (search_path, role) applied to every connection."""
    parsed = make_url(url)
    options = " ".join(f"-c{key}={value}" for key, value in settings.items())
    if parsed.query.get("options"):
        options = f"{parsed.query['options']} {options}"
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


# The role interlock_app belongs to the whole server, not to one schema: a test that creates and
# drops it holds this advisory lock throughout, so two test processes (pytest-xdist workers, or
# runs from two checkouts) never drop it under each other.
APP_ROLE_LOCK = 0x1A7E_0A99


@contextmanager
def app_role_lock() -> Iterator[None]:
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (APP_ROLE_LOCK,))
        yield  # closing the connection releases the lock


@dataclass
class Backend:
    name: str
    url: str
    # A plain engine for tampering behind the store's back.
    admin: Engine
    schema: str | None = None

    def sql(self, statement: str, **params: Any) -> None:
        with self.admin.begin() as conn:
            conn.execute(text(statement), params)

    def scalar(self, statement: str, **params: Any) -> Any:
        with self.admin.connect() as conn:
            return conn.execute(text(statement), params).scalar()

    def json(self, param: str) -> str:
        """SQL for a JSON value from a text parameter (PostgreSQL will not take text as json)."""
        return f"CAST(:{param} AS json)" if self.name == "postgresql" else f":{param}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
        admin = create_engine(url)
        try:
            yield Backend("sqlite", url, admin)
        finally:
            admin.dispose()
        return
    schema = request.getfixturevalue("pg_schema")
    url = with_options(PG_URL, search_path=schema)
    admin = create_engine(url)
    try:
        yield Backend("postgresql", url, admin, schema)
    finally:
        admin.dispose()


@pytest.fixture
def head_file(tmp_path: Path) -> Path:
    return tmp_path / "audit-head.json"


@pytest.fixture
def store(backend: Backend, head_file: Path) -> Iterator[AuditStore]:
    with AuditStore(backend.url, head_file=head_file) as store:
        store.migrate()
        yield store

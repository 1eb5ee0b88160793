"""Autonomy fixtures: the audit store on SQLite and on the real PostgreSQL (tests/audit's)."""

from tests.audit.conftest import backend, head_file, pg_schema, store

__all__ = ["backend", "head_file", "pg_schema", "store"]

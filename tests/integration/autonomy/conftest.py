"""Autonomy fixtures: the audit store on SQLite and on the real PostgreSQL (tests/integration/audit's)."""

from tests.integration.audit.conftest import backend, head_file, pg_schema, store

__all__ = ["backend", "head_file", "pg_schema", "store"]

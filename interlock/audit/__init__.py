"""Interlock's audit trail: a hash-chained, append-only record of every proposal's life.

`events` (the kinds and AuditEventIn) is pure and safe for workflows to import; the store and
metrics, which need a database, load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interlock.audit.events import AuditEventIn, EventKind

if TYPE_CHECKING:
    from interlock.audit.metrics import compute_metrics, prometheus_text
    from interlock.audit.store import (
        AppendResult,
        AuditEvent,
        AuditStore,
        AuditStoreError,
        EventIdConflict,
        VerifyReport,
    )
    from interlock.audit.verify import Problem, ProblemKind
    from interlock.settings import Settings

__all__ = [
    "AppendResult",
    "AuditEvent",
    "AuditEventIn",
    "AuditStore",
    "AuditStoreError",
    "EventIdConflict",
    "EventKind",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "compute_metrics",
    "open_store",
    "prometheus_text",
    "store_url",
]

_LAZY = {
    "AppendResult": "interlock.audit.store",
    "AuditEvent": "interlock.audit.store",
    "AuditStore": "interlock.audit.store",
    "AuditStoreError": "interlock.audit.store",
    "EventIdConflict": "interlock.audit.store",
    "VerifyReport": "interlock.audit.store",
    "Problem": "interlock.audit.verify",
    "ProblemKind": "interlock.audit.verify",
    "compute_metrics": "interlock.audit.metrics",
    "prometheus_text": "interlock.audit.metrics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def store_url(settings: Settings) -> str:
    """INTERLOCK_DATABASE_URL when set, else the SQLite file in the state folder."""
    if settings.database_url is not None and settings.database_url.get_secret_value():
        return settings.database_url.get_secret_value()
    return f"sqlite:///{settings.home_dir / 'audit.db'}"


def open_store(settings: Settings) -> AuditStore:
    """The configured audit store, migrated to the newest schema.

    The head file stays in the state folder even with PostgreSQL: it is this host's own record
    of the newest row it wrote, kept outside the database it vouches for.
    """
    from interlock.audit.store import AuditStore

    store = AuditStore(store_url(settings), head_file=settings.home_dir / "audit-head.json")
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store

"""Interlock's audit trail: a hash-chained, append-only record of every proposal's life.

`events` (the kinds and AuditEventIn) is pure and safe for workflows to import; the store and
metrics, which need a database, load only when first used.
"""

from __future__ import annotations

from pathlib import Path
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


def open_store(settings: Settings, *, public_key: str | None = None) -> AuditStore:
    """The configured audit store, migrated to the newest schema, with its checkpoint anchor.

    The head file stays in the state folder even with PostgreSQL: it is this host's own record
    of the newest row it wrote, kept outside the database it vouches for. Appends are signed when
    this host holds the audit signing key (the worker does); verify trusts `public_key`, else
    INTERLOCK_AUDIT_PUBLIC_KEY, else the signing key's own .pub.
    """
    from interlock.audit.store import AuditStore

    signer, anchor, trusted = _anchoring(settings, public_key)
    store = AuditStore(
        store_url(settings),
        head_file=settings.home_dir / "audit-head.json",
        signer=signer,
        anchor=anchor,
        trusted=trusted,
    )
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


def _anchoring(settings: Settings, public_key: str | None) -> tuple[Any, Any, Any]:
    from sqlalchemy.engine import make_url

    from interlock.audit.anchor import AnchorError, DirectoryAnchor, PostgresAnchor, open_anchor
    from interlock.audit.checkpoint import CheckpointKeyError, CheckpointSigner, TrustedKeys
    from interlock.audit.store import AuditStoreError
    from interlock.keys import audit_public_key_path

    key_file = settings.audit_signing_key_file
    try:
        signer = CheckpointSigner.from_file(key_file) if key_file.exists() else None
        if signer is None and settings.audit_signing_key is not None:
            raise CheckpointKeyError(f"INTERLOCK_AUDIT_SIGNING_KEY: {key_file} does not exist")
        spec = public_key or settings.audit_public_key
        if spec:
            trusted = TrustedKeys.parse(spec)
        elif signer is not None:
            trusted = TrustedKeys([signer.public_key])
        elif audit_public_key_path(key_file).exists():
            trusted = TrustedKeys.parse(str(audit_public_key_path(key_file)))
        else:
            trusted = TrustedKeys([])
        anchor = open_anchor(settings.audit_anchor_spec)
    except (CheckpointKeyError, AnchorError) as exc:
        raise AuditStoreError(str(exc)) from None

    url = make_url(store_url(settings))
    if isinstance(anchor, DirectoryAnchor) and url.get_backend_name() == "sqlite" and url.database:
        if anchor.folder == Path(url.database).expanduser().resolve().parent:
            anchor.close()
            raise AuditStoreError(
                f"INTERLOCK_AUDIT_ANCHOR: {anchor.folder} is the audit database's own folder; "
                "give a folder the database's owner cannot write (another volume or host)"
            )
    if isinstance(anchor, PostgresAnchor) and anchor.url.set(drivername="postgresql") == url.set(
        drivername="postgresql"
    ):
        anchor.close()
        raise AuditStoreError(
            "INTERLOCK_AUDIT_ANCHOR is the audit database itself: give another database or role"
        )
    return signer, anchor, trusted

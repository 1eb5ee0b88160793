"""The second place each signed checkpoint goes: a folder (one JSON line a checkpoint) or a
PostgreSQL table in another database, under a role the audit database's owner does not have.

The audit store keeps a copy of each checkpoint too (`CHECKPOINTS`, in the same transaction as the
rows), but verify trusts the anchor: whoever owns the audit database can delete the store's copies.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import SQLModel

from interlock.audit.checkpoint import Checkpoint

# The same table in the audit store (migration 0002) and in a PostgreSQL anchor. Two checkpoints
# may name one seq with different hashes (the chain was rewritten between them): both are kept.
# A retry writing the same checkpoint again is a no-op.
CHECKPOINTS = Table(
    "audit_checkpoints",
    SQLModel.metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("events", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("at", String(32), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", String(128), nullable=False),
    PrimaryKeyConstraint("seq", "hash", "key_id", name="pk_audit_checkpoints"),
)
CHECKPOINT_FILE = "checkpoints.jsonl"


class AnchorError(Exception):
    """The anchor cannot be opened, read or written."""


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OSError):
        return orig.strerror or str(orig)
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


# What a read yields: a checkpoint's fields as stored, or (position, why) for an unreadable entry.
Entry = dict[str, Any] | tuple[str, str]


class DirectoryAnchor:
    """checkpoints.jsonl in a folder: appended with O_APPEND, one line (< 4 KB) per write, fsynced."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / CHECKPOINT_FILE
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"folder {self.folder}"

    def write(self, checkpoints: Iterable[Checkpoint]) -> None:
        text = "".join(json.dumps(cp.model_dump(), sort_keys=True) + "\n" for cp in checkpoints)
        if not text:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                try:
                    os.write(fd, text.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise AnchorError(f"cannot write {self.path}: {_one_line(exc)}") from exc

    def read(self, seqs: set[int] | None = None) -> Iterator[Entry]:
        if not self.path.exists():
            return
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        seq = entry["seq"]
                    except (ValueError, KeyError, TypeError):
                        yield (f"line {number} of {self.path}", "it is not a checkpoint")
                        continue
                    if seqs is None or seq in seqs:
                        yield entry
        except OSError as exc:
            raise AnchorError(f"cannot read {self.path}: {_one_line(exc)}") from exc

    def close(self) -> None:
        pass


class PostgresAnchor:
    """The audit_checkpoints table of another PostgreSQL database (created on first use if allowed)."""

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise AnchorError(f"invalid audit anchor URL: {exc}") from None
        if parsed.get_backend_name() != "postgresql":
            raise AnchorError("the audit anchor must be a folder or a postgresql:// URL")
        self.url = parsed.set(drivername="postgresql+psycopg")
        self.engine: Engine = create_engine(self.url, pool_pre_ping=True)
        self._ready = False

    def __repr__(self) -> str:
        return f"table audit_checkpoints at {self.url.render_as_string(hide_password=True)}"

    def _prepare(self) -> None:
        if not self._ready:
            with self.engine.begin() as conn:
                CHECKPOINTS.create(conn, checkfirst=True)
            self._ready = True

    def write(self, checkpoints: Iterable[Checkpoint]) -> None:
        rows = [cp.model_dump() for cp in checkpoints]
        if not rows:
            return
        try:
            self._prepare()
            with self.engine.begin() as conn:
                conn.execute(pg_insert(CHECKPOINTS).values(rows).on_conflict_do_nothing())
        except SQLAlchemyError as exc:
            raise AnchorError(f"cannot write the audit anchor ({self!r}): {_one_line(exc)}") from exc

    def read(self, seqs: set[int] | None = None) -> Iterator[Entry]:
        query = select(CHECKPOINTS).order_by(CHECKPOINTS.c.seq)
        try:
            self._prepare()
            with self.engine.connect() as conn:
                if seqs is None:
                    for row in conn.execute(query.execution_options(yield_per=5000)):
                        yield dict(row._mapping)
                    return
                wanted = sorted(seqs)
                for start in range(0, len(wanted), 1000):
                    chunk = wanted[start : start + 1000]
                    for row in conn.execute(query.where(CHECKPOINTS.c.seq.in_(chunk))):
                        yield dict(row._mapping)
        except SQLAlchemyError as exc:
            raise AnchorError(f"cannot read the audit anchor ({self!r}): {_one_line(exc)}") from exc

    def close(self) -> None:
        self.engine.dispose()


Anchor = DirectoryAnchor | PostgresAnchor


def open_anchor(spec: str) -> Anchor:
    """A folder path, or a postgresql:// URL."""
    if spec.startswith(("postgresql:", "postgresql+", "postgres:")):
        return PostgresAnchor(spec)
    if "://" in spec:
        raise AnchorError("the audit anchor must be a folder or a postgresql:// URL")
    return DirectoryAnchor(Path(spec).expanduser().resolve())

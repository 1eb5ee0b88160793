"""The audit store: an append-only, hash-chained table of audit events in SQLite or PostgreSQL.

Rows are only ever inserted; nothing in Interlock updates or deletes them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    Index,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, Session, SQLModel, col
from sqlmodel import select as orm_select

from interlock.audit.anchor import CHECKPOINTS, Anchor, AnchorError
from interlock.audit.anchor_check import AnchorIndex, AnchorJudge, AnchorSummary
from interlock.audit.chain import (
    GENESIS,
    canonical_at,
    canonical_event,
    canonical_json,
    canonical_record,
    chain_hash,
    event_record,
)
from interlock.audit.checkpoint import Checkpoint, CheckpointSigner, TrustedKeys
from interlock.audit.events import AuditEventIn
from interlock.audit.verify import ChainChecker, Head, Problem

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Every writer of one database takes this transaction-scoped advisory lock before reading the
# chain's last row, so two writers can never both extend the same row (fork the chain).
APPEND_LOCK_KEY = 7_415_020_911


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; on SQLite stored as text in the chain's canonical form.

    SQLite has no timestamp type: storing the canonical text means verify reads back exactly the
    bytes that were hashed, and ISO text still sorts and compares in time order.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    _sqlite = sqlite.DATETIME(
        storage_format=(
            "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06dZ"
        ),
        regexp=r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z",
    )

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(self._sqlite)
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("audit timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The partial indexes metrics reads (see the migration).
_LIFECYCLE = "kind IN ('submitted', 'final', 'escalated')"
_HUMAN_DECISION = "kind = 'decision' AND CAST((data ->> 'human') AS BOOLEAN)"
_HUMAN_REJECTION = _HUMAN_DECISION + " AND (data ->> 'decision') = 'reject'"


def _str(length: int, **kw: Any) -> Any:
    return Field(default=None, sa_column=Column(String(length), **kw))


class AuditEvent(SQLModel, table=True):
    """One stored audit event. The migration in interlock/migrations is the schema's source."""

    __tablename__ = "audit_events"
    # As the migration creates them (it is the source; this keeps autogenerate quiet).
    __table_args__ = (
        UniqueConstraint("event_id", name="uq_audit_events_event_id"),
        Index("ix_audit_events_proposal_seq", "proposal_id", "seq"),
        Index("ix_audit_events_kind_at", "kind", "at"),
        Index("ix_audit_events_at", "at"),
        Index(
            "ix_audit_events_lifecycle",
            *("proposal_id", "kind", "at", "status", "recommender", "model_version", "action"),
            postgresql_where=text(_LIFECYCLE),
            sqlite_where=text(_LIFECYCLE),
        ),
        Index(
            "ix_audit_events_human_decisions",
            *("proposal_id", "at"),
            postgresql_where=text(_HUMAN_DECISION),
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_audit_events_human_rejections",
            "proposal_id",
            postgresql_where=text(_HUMAN_REJECTION),
        ).ddl_if(dialect="postgresql"),
    )

    seq: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
        )
    )
    event_id: str = Field(sa_column=Column(String(200), nullable=False))
    proposal_id: str = Field(sa_column=Column(String(128), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    actor: str | None = _str(256)
    status: str | None = _str(64)
    recommender: str | None = _str(256)
    model_version: str | None = _str(256)
    action: str | None = _str(256)
    service: str | None = _str(256)
    risk_tier: str | None = _str(32)
    trace_id: str | None = _str(128)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


TABLE = AuditEvent.__table__  # type: ignore[attr-defined]


class AppendResult(BaseModel):
    seq: int
    hash: str
    # True when the event_id was already recorded: the existing row is returned, nothing written.
    duplicate: bool


class VerifyReport(BaseModel):
    ok: bool
    events: int
    problems: list[Problem]
    # The chain's last row, and the last row this host recorded writing (the head file).
    head_seq: int | None
    head_file_seq: int | None
    elapsed_seconds: float
    rate_per_s: float
    # The signed checkpoints in the anchor (the second place), when one is configured.
    anchor: str | None = None
    checkpoints: int = 0
    checkpoints_checked: int = 0
    anchored_seq: int | None = None
    unanchored_rows: int = 0


class _Pending:
    """One caller's events waiting in a GroupCommit, and what became of them."""

    def __init__(self, events: list[AuditEventIn]) -> None:
        self.events = events
        self.ready = threading.Event()
        self.lead = False  # handed the next group to write
        self.results: list[AppendResult] = []
        self.error: BaseException | None = None

    def outcome(self) -> list[AppendResult]:
        if self.error is not None:
            raise self.error
        return self.results


class GroupCommit:
    """Concurrent appends of one process written in one transaction (group commit).

    The chain is one sequence, so appends are serialised by the store's write lock anyway;
    rather than queue for it one by one (a commit, a checkpoint signature and a head write
    each), callers arriving while a transaction is in flight wait, and the next transaction
    writes all of them: each call's events together and in order. A caller is never delayed to
    gather a bigger group. If a group's transaction fails, each call in it is retried on its
    own, so one caller's conflicting event or oversized row fails that call only, and every
    call stays all or none.
    """

    def __init__(self, write: Callable[[list[AuditEventIn]], list[AppendResult]]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False
        self.grouped_calls = 0  # calls that shared a transaction with another (tests read it)

    def append(self, events: list[AuditEventIn]) -> list[AppendResult]:
        mine = _Pending(events)
        with self._lock:
            self._queue.append(mine)
            lead = not self._busy
            self._busy = True
        if not lead:
            mine.ready.wait()
            if not mine.lead:
                return mine.outcome()
        with self._lock:
            group, self._queue = self._queue, []
        try:
            self._commit(group)
        finally:
            with self._lock:
                if self._queue:
                    nxt = self._queue[0]
                    nxt.lead = True
                    nxt.ready.set()
                else:
                    self._busy = False
            for pending in group:
                if pending is not mine:
                    pending.ready.set()
        return mine.outcome()

    def _commit(self, group: list[_Pending]) -> None:
        if len(group) > 1:
            self.grouped_calls += len(group)
            try:
                results = self._write([e for p in group for e in p.events])
            except Exception:  # noqa: BLE001 - each call is tried again on its own below
                pass
            else:
                start = 0
                for pending in group:
                    pending.results = results[start : start + len(pending.events)]
                    start += len(pending.events)
                return
        for pending in group:
            try:
                pending.results = self._write(pending.events)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's own thread
                pending.error = exc


class AuditStoreError(Exception):
    """The audit store cannot be opened, read or written."""


class EventIdConflict(AuditStoreError):
    """An event_id was reused for a different event: the caller's ids are not deterministic."""


def one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _normalise_url(url: str) -> Any:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AuditStoreError(f"invalid audit database URL: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver Interlock ships; bare postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise AuditStoreError(
            f"unsupported audit database {parsed.get_backend_name()!r}: use sqlite or postgresql"
        )
    return parsed


def _build_engine(url: str) -> Engine:
    parsed = _normalise_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, json_serializer=canonical_json, pool_pre_ping=True)

    if parsed.database and parsed.database != ":memory:":
        try:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditStoreError(f"cannot create the audit store's folder: {exc}") from None
    # Writers wait for each other's BEGIN IMMEDIATE for up to this long before failing.
    engine = create_engine(parsed, json_serializer=canonical_json, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN IMMEDIATE is ours to issue.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # WAL lets verify and metrics read while a writer appends.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # An append must hold the write lock from its read of the last row to its commit.
        immediate = conn.get_execution_options().get("audit_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class AuditStore:
    """Appends, verifies and reads the audit chain.

    `head_file` records the newest row this host wrote, so verify can tell when the newest rows
    were removed; None turns that check off. With a `signer`, each append transaction ends with
    a signed checkpoint of its last row, kept in the store and written to `anchor`; verify checks
    the chain against the anchor's checkpoints with the `trusted` public keys.
    """

    def __init__(
        self,
        url: str,
        head_file: Path | None = None,
        *,
        signer: CheckpointSigner | None = None,
        anchor: Anchor | None = None,
        trusted: TrustedKeys | None = None,
    ):
        self.engine = _build_engine(url)
        self.dialect = self.engine.dialect.name
        self.head_file = head_file
        self.signer = signer
        self.anchor = anchor
        if trusted is None and signer is not None:
            trusted = TrustedKeys([signer.public_key])
        self.trusted = trusted or TrustedKeys([])
        self._head_lock = threading.Lock()
        self._group = GroupCommit(self._append_now)
        self._closed = False

        @event.listens_for(self.engine, "checkin")
        def _checkin(dbapi_conn: Any, _record: Any) -> None:
            # A connection still in use when the store was closed (an activity's thread that
            # outlived a worker shutdown) is closed when it comes back, not left to the GC.
            if self._closed:
                dbapi_conn.close()

    def close(self) -> None:
        self._closed = True
        self.engine.dispose()
        if self.anchor is not None:
            self.anchor.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # --- schema -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest migration (alembic upgrade head)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        try:
            # Under the append lock, so processes opening the store together migrate one by one.
            with self._locked() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except (SQLAlchemyError, CommandError) as exc:
            raise AuditStoreError(f"cannot migrate the audit store: {one_line(exc)}") from exc

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(audit_write=True)
            else:
                # Each statement must see what the previous lock holder committed.
                conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
                yield conn

    # --- writing ----------------------------------------------------------------------

    def append(self, event: AuditEventIn) -> AppendResult:
        """Add an event at the end of the chain; a retried event_id returns the row already there."""
        return self.append_many([event])[0]

    def append_many(self, events: list[AuditEventIn]) -> list[AppendResult]:
        """Add events at the end of the chain, in order, in one transaction: all or none.

        An event_id already recorded with the same content is not written again (a retry); with
        different content it is refused (EventIdConflict) and none of the events is written.
        Concurrent calls in this process are group-committed (see GroupCommit): each call's
        events stay together and in order, and each call still succeeds or fails on its own.
        """
        if not events:
            return []
        return self._group.append(events)

    def _append_now(self, events: list[AuditEventIn]) -> list[AppendResult]:
        wanted = [(item, event_record(item), canonical_event(item)) for item in events]
        ids = [item.event_id for item in events]
        if len(set(ids)) != len(ids):
            raise EventIdConflict(f"one batch names an event_id twice: {sorted(ids)}")
        written: dict[str, tuple[int, str]] = {}
        checkpoint: Checkpoint | None = None
        try:
            existing = self._find_many(ids)
            if len(existing) < len(ids):
                with self._locked() as conn:
                    # Again under the lock: a concurrent retry may have written them meanwhile.
                    existing = self._find_many(ids, conn)
                    self._check_same(existing, wanted)
                    last = conn.execute(
                        select(TABLE.c.seq, TABLE.c.hash).order_by(TABLE.c.seq.desc()).limit(1)
                    ).first()
                    prev_seq, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
                    rows = []
                    for item, record, canonical in wanted:
                        if item.event_id in existing:
                            continue
                        seq, digest = prev_seq + 1, chain_hash(prev_hash, canonical)
                        rows.append({"seq": seq, "prev_hash": prev_hash, "hash": digest, **record})
                        written[item.event_id] = (seq, digest)
                        prev_seq, prev_hash = seq, digest
                    if rows:
                        conn.execute(TABLE.insert(), rows)
                        if self.signer is not None:
                            # Signed here, from the hash this writer computed, never from a row read
                            # back: a checkpoint vouches only for what Interlock itself wrote.
                            end = rows[-1]
                            checkpoint = self.signer.sign(end["seq"], end["event_id"], end["hash"])
                            conn.execute(CHECKPOINTS.insert(), [checkpoint.model_dump()])
            else:
                self._check_same(existing, wanted)  # all there already: a retry, or a reused id
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot write the audit store: {one_line(exc)}") from exc

        results = []
        for item in events:
            if item.event_id in written:
                seq, digest = written[item.event_id]
                log.debug("audit event %s recorded as row %d", item.event_id, seq)
                results.append(AppendResult(seq=seq, hash=digest, duplicate=False))
            else:
                row = existing[item.event_id]
                results.append(AppendResult(seq=row.seq, hash=row.hash, duplicate=True))
        # Re-advancing the head on a retry repairs a head file a crash left behind.
        newest = max(results, key=lambda r: r.seq)
        self.advance_head(newest.seq, newest.hash)
        if checkpoint is None and self.anchor is not None and not written:
            # A retry: the anchor write may be what failed last time. Copy the store's signed copy.
            checkpoint = self._stored_checkpoint(newest.seq, newest.hash)
        if checkpoint is not None and self.anchor is not None:
            try:
                self.anchor.write([checkpoint])
            except AnchorError as exc:
                raise AuditStoreError(
                    f"row {checkpoint.seq} is recorded but its checkpoint is not: {exc}"
                ) from exc
        return results

    def _stored_checkpoint(self, seq: int, digest: str) -> Checkpoint | None:
        query = select(CHECKPOINTS).where(CHECKPOINTS.c.seq == seq, CHECKPOINTS.c.hash == digest)
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
        return Checkpoint.model_validate(dict(row._mapping)) if row is not None else None

    def checkpoints_of(self, seqs: set[int]) -> list[Checkpoint]:
        """Every checkpoint of these rows, from the anchor and the store's own copies, in seq order."""
        found = {(c.seq, c.hash, c.key_id): c for c in self.stored_checkpoints(seqs)}
        if self.anchor is not None:
            try:
                for entry in self.anchor.read(seqs):
                    if isinstance(entry, dict):
                        try:
                            c = Checkpoint.model_validate(entry)
                        except ValueError:
                            continue  # verify reports it; a bundle carries only readable ones
                        found.setdefault((c.seq, c.hash, c.key_id), c)
            except AnchorError as exc:
                raise AuditStoreError(str(exc)) from exc
        return [found[k] for k in sorted(found)]

    def stored_checkpoints(self, seqs: set[int] | None = None) -> list[Checkpoint]:
        """The store's own copies of the signed checkpoints (of these rows), in seq order."""
        query = select(CHECKPOINTS).order_by(CHECKPOINTS.c.seq)
        try:
            with self.engine.connect() as conn:
                if seqs is None:
                    return [Checkpoint.model_validate(dict(r._mapping)) for r in conn.execute(query)]
                found = []
                wanted = sorted(seqs)
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    rows = conn.execute(query.where(CHECKPOINTS.c.seq.in_(chunk)))
                    found += [Checkpoint.model_validate(dict(r._mapping)) for r in rows]
                return found
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc

    @staticmethod
    def _check_same(existing: dict[str, Any], wanted: list[tuple[AuditEventIn, dict, str]]) -> None:
        for item, _, canonical in wanted:
            row = existing.get(item.event_id)
            if row is not None and canonical_row(row) != canonical:
                raise EventIdConflict(
                    f"event_id {item.event_id!r} is already recorded (row {row.seq}) with different content"
                )

    def _find_many(self, event_ids: list[str], conn: Connection | None = None) -> dict[str, Any]:
        query = select(TABLE).where(TABLE.c.event_id.in_(event_ids))
        if conn is not None:
            return {row.event_id: row for row in conn.execute(query)}
        with self.engine.connect() as own:
            return {row.event_id: row for row in own.execute(query)}

    def exists(self, event_id: str) -> bool:
        try:
            return self._find(event_id) is not None
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc

    def _find(self, event_id: str, conn: Connection | None = None) -> Any:
        query = select(TABLE).where(TABLE.c.event_id == event_id)
        if conn is not None:
            return conn.execute(query).first()
        with self.engine.connect() as own:
            return own.execute(query).first()

    # --- the head file ----------------------------------------------------------------

    def read_head(self) -> Head | None:
        if self.head_file is None or not self.head_file.exists():
            return None
        try:
            return Head.model_validate_json(self.head_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise AuditStoreError(
                f"audit head file {self.head_file} is unreadable ({type(exc).__name__}); "
                "restore it from a backup or remove it to stop checking for truncation"
            ) from None

    def advance_head(self, seq: int, digest: str) -> None:
        """Record (seq, hash) as the chain head if it is newer than what the file holds."""
        if self.head_file is None:
            return
        try:
            self._write_head(self.head_file, seq, digest)
        except OSError as exc:
            raise AuditStoreError(
                f"row {seq} is recorded but the head file {self.head_file} could not be "
                f"written: {exc.strerror or exc}"
            ) from exc

    def _write_head(self, path: Path, seq: int, digest: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The thread lock orders this process's writers; flock orders other processes'.
        with self._head_lock, open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_head()
            if current is not None and current.seq >= seq:
                if current.seq == seq and current.hash != digest:
                    log.error(
                        "audit row %d differs from the row recorded in %s: the newest audit "
                        "rows were removed and rewritten",
                        seq,
                        path,
                    )
                return
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "w") as handle:
                json.dump({"seq": seq, "hash": digest}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)

    # --- reading ----------------------------------------------------------------------

    def timeline(self, proposal_id: str) -> list[AuditEvent]:
        """A proposal's events in the order they were recorded."""
        try:
            with Session(self.engine) as session:
                query = (
                    orm_select(AuditEvent)
                    .where(AuditEvent.proposal_id == proposal_id)
                    .order_by(col(AuditEvent.seq))
                )
                return list(session.exec(query).all())
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc

    def events(self, proposal_id: str | None = None) -> Iterator[AuditEvent]:
        """Every event (or one proposal's) in chain order, streamed rather than loaded at once."""
        query = orm_select(AuditEvent).order_by(col(AuditEvent.seq))
        if proposal_id is not None:
            query = query.where(AuditEvent.proposal_id == proposal_id)
        try:
            with Session(self.engine) as session:
                yield from session.exec(query.execution_options(yield_per=2000))
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc

    def last(self) -> tuple[int, str] | None:
        """The chain's last (seq, hash), or None when it is empty."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(TABLE.c.seq, TABLE.c.hash).order_by(TABLE.c.seq.desc()).limit(1)
            ).first()
        return (row[0], row[1]) if row else None

    # --- verifying --------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Recompute every hash and link, and compare the last row with the head file."""
        # The head file is read before the rows: every row it names is committed by then.
        head = self.read_head()
        started = time.perf_counter()
        index = self._anchor_index()
        checker = ChainChecker(head, index.want if index else None)
        anchor = AnchorSummary()
        try:
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    # One snapshot for the scan and the look-ups after it.
                    conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    dbapi = conn.connection.driver_connection
                    checker.scan(self._verify_rows(dbapi))
                    problems = checker.finish(lambda hashes: self._rows_by_hash(conn, hashes))
                    if index is not None and self.anchor is not None:
                        judge = AnchorJudge(
                            self.anchor, index, self.trusted, lambda eid: self._row_of(conn, eid)
                        )
                        anchor = judge.judge(checker.last_seq, checker.matched, checker.mismatched, problems)
                        problems += judge.problems
        except AnchorError as exc:
            raise AuditStoreError(str(exc)) from exc
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
        except Exception as exc:  # the raw driver's own errors
            if type(exc).__module__.split(".")[0] in ("psycopg", "sqlite3"):
                raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
            raise
        elapsed = time.perf_counter() - started
        report = VerifyReport(
            ok=not problems,
            events=checker.events,
            problems=problems,
            head_seq=checker.last_seq,
            head_file_seq=head.seq if head else None,
            elapsed_seconds=round(elapsed, 4),
            rate_per_s=round(checker.events / elapsed, 1) if elapsed > 0 else 0.0,
            **anchor.model_dump(),
        )
        log.info(
            "audit chain verified: %d events, %d problems, %.0f events/s",
            report.events,
            len(problems),
            report.rate_per_s,
        )
        return report

    def _anchor_index(self) -> AnchorIndex | None:
        if self.anchor is None:
            return None
        try:
            return AnchorIndex.load(self.anchor)
        except AnchorError as exc:
            raise AuditStoreError(str(exc)) from exc

    @staticmethod
    def _row_of(conn: Connection, event_id: str) -> tuple[int, str] | None:
        row = conn.execute(select(TABLE.c.seq, TABLE.c.hash).where(TABLE.c.event_id == event_id)).first()
        return (row[0], row[1]) if row is not None else None

    def _verify_rows(self, dbapi: Any) -> Iterator[tuple[Any, ...]]:
        # Raw driver cursors: ORM or Core rows would cost more than the hashing itself.
        # Column order: seq, prev_hash, hash, then canonical_record's arguments.
        if self.dialect == "postgresql":
            # Server-side and binary: rows arrive in batches, timestamps already as text.
            cursor = dbapi.cursor(name="audit_verify", binary=True)
            cursor.execute(_PG_VERIFY_SQL)
        else:
            cursor = dbapi.cursor()
            cursor.execute(_SQLITE_VERIFY_SQL)
        try:
            for batch in _prefetched(lambda: cursor.fetchmany(VERIFY_BATCH)):
                yield from batch
        finally:
            cursor.close()

    def _rows_by_hash(self, conn: Connection, hashes: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            rows = conn.execute(
                select(TABLE.c.seq, TABLE.c.event_id, TABLE.c.hash).where(TABLE.c.hash.in_(chunk))
            )
            for seq, event_id, digest in rows:
                found.setdefault(digest, (seq, event_id))
        return found


VERIFY_BATCH = 5000


def _prefetched(fetch: Callable[[], list[Any]], depth: int = 4) -> Iterator[list[Any]]:
    """Batches from `fetch`, fetched by a helper thread while the caller hashes the last ones.

    The drivers release the GIL while they wait for the database, so reading and hashing
    overlap: verify runs about half again as fast. Only the helper touches the cursor until
    it has stopped.
    """
    batches: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: list[Any] | BaseException) -> None:
        # Never blocks for good: the caller may have stopped reading.
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            while not stop.is_set():
                batch = fetch()
                hand_over(batch)
                if not batch:
                    return
        except BaseException as exc:  # raised again by the caller
            hand_over(exc)

    helper = threading.Thread(target=work, name="audit-verify-fetch", daemon=True)
    helper.start()
    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        helper.join()


_COLUMNS_AFTER_AT = (
    "event_id, kind, model_version, proposal_id, recommender, risk_tier, service, status, trace_id"
)
_PG_VERIFY_SQL = (
    "SELECT seq, prev_hash, hash, action, actor, "
    "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), data::text, "
    f"{_COLUMNS_AFTER_AT} FROM audit_events ORDER BY seq"
)
_SQLITE_VERIFY_SQL = (
    f"SELECT seq, prev_hash, hash, action, actor, at, data, {_COLUMNS_AFTER_AT} "
    "FROM audit_events ORDER BY seq"
)


def canonical_row(row: Any) -> str:
    """The text a stored row's hash covers (what verify and the export bundle recompute)."""
    return canonical_record(
        row.action,
        row.actor,
        canonical_at(row.at),
        canonical_json(row.data),
        row.event_id,
        row.kind,
        row.model_version,
        row.proposal_id,
        row.recommender,
        row.risk_tier,
        row.service,
        row.status,
        row.trace_id,
    )

"""Recommender tokens for the HTTP intake: issued once, stored only as sha256 hashes.

A token decides which recommender a request speaks for, so the table is the intake's
whole notion of identity. `tokens_app` is the `interlock tokens` command group.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, event
from sqlmodel import Field, Session, SQLModel, create_engine, select

from interlock.models import SAFE_NAME

log = logging.getLogger(__name__)

TOKEN_PREFIX = "ilk_"
# `ilk_` + 43 characters of urlsafe base64 for 32 random bytes; anything much longer is
# not one of ours and is refused before hashing.
_MAX_TOKEN_LENGTH = 128


def intake_db_path(home_dir: Path) -> Path:
    return home_dir / "intake.db"


def open_intake_db(path: Path) -> Engine:
    """An engine on the intake's SQLite file, shared by the token and idempotency tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The API and `interlock tokens` may write at once: wait for the lock instead of failing.
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 15, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets the API read tokens while the CLI writes one.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    return engine


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _as_utc(value: datetime) -> datetime:
    # SQLite keeps no time zone; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class RecommenderToken(SQLModel, table=True):
    __tablename__ = "recommender_tokens"

    id: str = Field(primary_key=True)
    recommender: str = Field(index=True)
    token_hash: str = Field(unique=True, index=True)
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never the token, never its hash."""

    id: str
    recommender: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "recommender": self.recommender,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "active": self.active,
        }


@dataclass(frozen=True)
class IssuedToken:
    id: str
    recommender: str
    token: str


class TokenStore:
    def __init__(self, path: Path, engine: Engine | None = None):
        self.path = path
        self.engine = engine or open_intake_db(path)
        # Only our table: SQLModel's metadata is process-wide and holds other modules' tables.
        SQLModel.metadata.create_all(
            self.engine,
            tables=[RecommenderToken.__table__],  # type: ignore[attr-defined]
        )

    def issue(self, recommender: str) -> IssuedToken:
        if not SAFE_NAME.match(recommender) or recommender.lower().startswith("ansible_"):
            raise ValueError(
                f"recommender {recommender!r} is not a valid name (1-63 letters, digits, "
                "'.', '_' or '-'; proposals must be able to name it)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = RecommenderToken(
            id=f"tok_{secrets.token_hex(6)}",
            recommender=recommender,
            token_hash=hash_token(token),
            created_at=datetime.now(UTC),
        )
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(row)
            session.commit()
        log.info("issued token %s for recommender %s", row.id, recommender)
        return IssuedToken(row.id, recommender, token)

    def create(self, recommender: str) -> str:
        """A new token for `recommender`; only its hash is kept, so show it now or never."""
        return self.issue(recommender).token

    def revoke(self, token_or_id: str) -> bool:
        """Revoke by token or by id; False when nothing active matched."""
        by_token = token_or_id.startswith(TOKEN_PREFIX)
        column = RecommenderToken.token_hash if by_token else RecommenderToken.id
        key = hash_token(token_or_id) if by_token else token_or_id
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.exec(select(RecommenderToken).where(column == key)).first()
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
            session.add(row)
            session.commit()
            log.info("revoked token %s of recommender %s", row.id, row.recommender)
            return True

    def revoke_all(self, recommender: str) -> int:
        now = datetime.now(UTC)
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(RecommenderToken).where(
                    RecommenderToken.recommender == recommender,
                    RecommenderToken.revoked_at == None,  # noqa: E711 (SQL IS NULL)
                )
            ).all()
            for row in rows:
                row.revoked_at = now
                session.add(row)
            session.commit()
        log.info("revoked %d token(s) of recommender %s", len(rows), recommender)
        return len(rows)

    def authenticate(self, token: str) -> str | None:
        """The recommender an active token speaks for, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        # The lookup is by hash, so timing reveals nothing about the stored value; the
        # compare_digest guards against a future lookup that is not an exact match.
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.exec(select(RecommenderToken).where(RecommenderToken.token_hash == digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        return row.recommender if hmac.compare_digest(row.token_hash, digest) else None

    def list(self) -> list[TokenInfo]:
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(RecommenderToken).order_by(RecommenderToken.created_at)  # type: ignore[arg-type]
            ).all()
        return [
            TokenInfo(
                r.id,
                r.recommender,
                _as_utc(r.created_at),
                _as_utc(r.revoked_at) if r.revoked_at else None,
            )
            for r in rows
        ]


# --- `interlock tokens` ----------------------------------------------------------------

tokens_app = typer.Typer(help="Tokens recommenders use to call the HTTP intake.", no_args_is_help=True)
_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def _store() -> TokenStore:
    from interlock.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        _err.print(f"error: invalid setting: {exc.errors()[0]['msg']}", markup=False)
        raise typer.Exit(2) from None
    return TokenStore(intake_db_path(settings.home_dir))


@tokens_app.command("create")
def create_command(recommender: str, json_out: _JsonFlag = False) -> None:
    """Issue a token for RECOMMENDER. It is printed once and cannot be shown again."""
    try:
        issued = _store().issue(recommender)
    except ValueError as exc:
        _err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    if json_out:
        sys.stdout.write(
            json.dumps({"id": issued.id, "recommender": recommender, "token": issued.token}) + "\n"
        )
        return
    _out.print(f"token for {recommender} (id {issued.id}); it is shown only this once:")
    _out.print(issued.token, markup=False)


@tokens_app.command("revoke")
def revoke_command(id_or_token: Annotated[str, typer.Argument(metavar="ID_OR_TOKEN")]) -> None:
    """Revoke one token, by its id or by the token itself. Exit 1 if none was active."""
    if not _store().revoke(id_or_token):
        _err.print("error: no active token matches", markup=False)
        raise typer.Exit(1)
    shown = id_or_token if not id_or_token.startswith(TOKEN_PREFIX) else "the token"
    _out.print(f"revoked {shown}", markup=False)


@tokens_app.command("list")
def list_command(json_out: _JsonFlag = False) -> None:
    """Every token's id, recommender and dates (never the token)."""
    tokens = _store().list()
    if json_out:
        sys.stdout.write(json.dumps([t.as_json() for t in tokens], indent=2) + "\n")
        return
    table = Table("id", "recommender", "created", "revoked")
    for t in tokens:
        table.add_row(
            t.id,
            t.recommender,
            t.created_at.isoformat(timespec="seconds"),
            t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "-",
        )
    _out.print(table)

"""First answers stored per (recommender, idempotency key): a retried submission gets the same."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

MAX_KEY_LENGTH = 255


class IntakeAnswer(SQLModel, table=True):
    __tablename__ = "intake_idempotency"

    recommender: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    body_sha256: str
    status_code: int
    response: str
    created_at: datetime


@dataclass(frozen=True)
class StoredAnswer:
    body_sha256: str
    status_code: int
    response: dict[str, Any]


def _answer(row: IntakeAnswer) -> StoredAnswer:
    return StoredAnswer(row.body_sha256, row.status_code, json.loads(row.response))


class IdempotencyStore:
    """Keys are scoped per recommender: one recommender can neither read nor block another's."""

    def __init__(self, engine: Engine):
        self.engine = engine
        SQLModel.metadata.create_all(
            engine,
            tables=[IntakeAnswer.__table__],  # type: ignore[attr-defined]
        )

    def get(self, recommender: str, key: str) -> StoredAnswer | None:
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(IntakeAnswer, (recommender, key))
            return _answer(row) if row else None

    def put(
        self,
        recommender: str,
        key: str,
        body_sha256: str,
        status_code: int,
        response: dict[str, Any],
    ) -> StoredAnswer:
        """Record the answer; when a concurrent request recorded one first, return that instead."""
        row = IntakeAnswer(
            recommender=recommender,
            key=key,
            body_sha256=body_sha256,
            status_code=status_code,
            response=json.dumps(response),
            created_at=datetime.now(UTC),
        )
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                existing = session.get(IntakeAnswer, (recommender, key))
                if existing is None:  # pragma: no cover - the row we collided with vanished
                    raise
                return _answer(existing)
        return StoredAnswer(body_sha256, status_code, response)

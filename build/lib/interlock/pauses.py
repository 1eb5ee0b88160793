"""The kill switch's durable record: which scopes are paused, by whom and why.

Stored in Interlock's database (SQLite in the state folder, or INTERLOCK_DATABASE_URL), so a
pause survives restarts and every worker sees it; open proposals are also signalled at once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from interlock.models import Pause, PauseScope
from interlock.settings import Settings

PAUSE_TABLE = "pauses"


class PauseRow(SQLModel, table=True):
    __tablename__ = PAUSE_TABLE

    id: int | None = Field(default=None, primary_key=True)
    scope_all: bool = False
    action: str | None = None
    recommender: str | None = None
    service: str | None = None
    reason: str
    paused_by: str
    paused_at: datetime
    abort_running: bool = False
    resumed_at: datetime | None = None
    resumed_by: str | None = None

    def to_pause(self) -> Pause:
        return Pause(
            scope=PauseScope(
                all=self.scope_all,
                action=self.action,
                recommender=self.recommender,
                service=self.service,
            ),
            reason=self.reason,
            by=self.paused_by,
            at=self.paused_at.replace(tzinfo=self.paused_at.tzinfo or UTC),
            abort_running=self.abort_running,
        )


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{settings.home_dir / 'interlock.db'}"


class PauseStore:
    def __init__(self, url: str):
        self.engine: Engine = create_engine(url)
        SQLModel.metadata.create_all(self.engine, tables=[SQLModel.metadata.tables[PAUSE_TABLE]])

    def close(self) -> None:
        self.engine.dispose()

    def add(self, pause: Pause) -> None:
        with Session(self.engine) as session:
            session.add(
                PauseRow(
                    scope_all=pause.scope.all,
                    action=pause.scope.action,
                    recommender=pause.scope.recommender,
                    service=pause.scope.service,
                    reason=pause.reason,
                    paused_by=pause.by,
                    paused_at=pause.at,
                    abort_running=pause.abort_running,
                )
            )
            session.commit()

    def resume(self, scope: PauseScope, by: str) -> int:
        """End every active pause with exactly this scope; returns how many."""
        with Session(self.engine) as session:
            rows = [
                r
                for r in session.exec(select(PauseRow).where(col(PauseRow.resumed_at).is_(None)))
                if r.to_pause().scope == scope
            ]
            for row in rows:
                # A pause is ended, never deleted: the record of who stopped what stays.
                row.resumed_at = datetime.now(UTC)
                row.resumed_by = by
                session.add(row)
            session.commit()
            return len(rows)

    def active(self) -> list[Pause]:
        with Session(self.engine) as session:
            rows = session.exec(select(PauseRow).where(col(PauseRow.resumed_at).is_(None)))
            return [r.to_pause() for r in rows]

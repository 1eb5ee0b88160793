"""The audit database goes away while audit events are written, then comes back.

Substitution, said plainly: restarting this machine's PostgreSQL service is not safe here (other
work shares it), so the outage is made inside PostgreSQL instead. The worker writes to a database
of its own as a role of its own; the outage revokes that role's CONNECT privilege on it (new
connections are refused: "permission denied for database") and kills every one of its open
connections with pg_terminate_backend in a loop, which is what a restart does to clients. Then
CONNECT is granted again. Twice, each time until audit writes have failed and wait for a retry
(seen in Temporal's pending activities): while proposals are submitted (their first events), and
while approved playbooks run and the others are rejected (execution, decision and final events).

Afterwards every proposal is final, each change happened once, each audit event is there exactly
once and the hash chain verifies.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from temporalio.client import Client

from bench.stack import DevServer, kill_process, make_settings, start_worker_process
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.integration.audit.conftest import PG_URL, pg_dsn
from tests.system.drills.conftest import SERVICES
from tests.system.drills.support import (
    all_final,
    approve,
    check_audit,
    check_changes,
    execution_started,
    reject,
    submit_many,
    wait_awaiting,
    wait_for,
)

PROPOSALS = 6


class AuditDatabase:
    """A database and a login role of its own, whose connections can be cut and refused."""

    def __init__(self) -> None:
        self.name = f"interlock_drill_{uuid.uuid4().hex[:10]}"

    def admin(self, statement: sql.Composable) -> None:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(statement)

    @property
    def url(self) -> str:
        from sqlalchemy.engine import make_url

        return (
            make_url(PG_URL)
            .set(username=self.name, password=None, database=self.name)
            .render_as_string(hide_password=False)
        )

    def create(self) -> None:
        ident = sql.Identifier(self.name)
        self.admin(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        self.admin(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident, ident))
        self.admin(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident))

    def drop(self) -> None:
        ident = sql.Identifier(self.name)
        self.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        self.admin(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))

    def refuse(self) -> None:
        ident = sql.Identifier(self.name)
        self.admin(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(ident, ident))

    def allow(self) -> None:
        ident = sql.Identifier(self.name)
        self.admin(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident, ident))

    def terminate(self) -> int:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return len(rows)

    async def outage(self, until: Callable[[], Awaitable[bool]], longest: float = 180.0) -> int:
        """Refuse new connections and kill open ones until `until()` holds; returns kills."""
        self.refuse()
        try:
            # At once, before anything else runs on this loop: a write already holding a pooled
            # connection would otherwise land before the outage begins.
            killed = self.terminate()
            deadline = time.monotonic() + longest
            while not await until():
                assert time.monotonic() < deadline, "the outage never met an audit write"
                killed += await asyncio.to_thread(self.terminate)
                await asyncio.sleep(0.2)
        finally:
            self.allow()
        return killed


@pytest.fixture
def audit_db() -> Iterator[AuditDatabase]:
    db = AuditDatabase()
    db.create()
    try:
        yield db
    finally:
        db.drop()


@pytest_asyncio.fixture
async def outage_settings(
    tmp_path: Path, drill_lab: Lab, drill_server: DevServer, audit_db: AuditDatabase
) -> AsyncIterator[Settings]:
    yield make_settings(tmp_path / "home", drill_lab.root, drill_server.address, database_url=audit_db.url)


async def failed_audit_writes(client: Client, ids: list[str]) -> int:
    """Audit activities pending a retry right now: each one met the outage."""
    count = 0
    for pid in ids:
        desc = await client.get_workflow_handle(pid).describe()
        count += sum(
            1
            for pending in desc.raw_description.pending_activities
            if pending.activity_type.name in ("record_audit_event", "record_audit_events")
            and pending.attempt > 1
        )
    return count


def until_failed_writes(client: Client, ids: list[str], wanted: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await failed_audit_writes(client, ids) >= wanted

    return check


async def test_audit_database_outage_loses_and_duplicates_nothing(
    drill_client: Client,
    outage_settings: Settings,
    audit_db: AuditDatabase,
    drill_lab: Lab,
    tmp_path: Path,
) -> None:
    client, settings = drill_client, outage_settings
    queue = f"drill-{uuid.uuid4().hex[:8]}"
    worker = start_worker_process(settings, queue, tmp_path / "worker.log")
    try:
        # Outage 1: from before submission until the first audit writes of several proposals
        # have failed and wait for a retry.
        audit_db.refuse()
        ids = await submit_many(client, settings, queue, PROPOSALS, "outage", SERVICES)
        killed = await audit_db.outage(until_failed_writes(client, ids, min(3, PROPOSALS)))
        await wait_awaiting(client, queue, ids)
        run, rest = ids[:2], ids[2:]
        await asyncio.gather(*(approve(client, p) for p in run))
        await wait_for(lambda: all(execution_started(settings, p) for p in run), "the playbooks to start")
        # Outage 2: while the playbooks run and the rest are rejected, until the rejections' and
        # the executions' audit writes have failed.
        rejecting = asyncio.gather(*(reject(client, p) for p in rest))
        killed += await audit_db.outage(until_failed_writes(client, ids, len(rest) + len(run)))
        await rejecting
        finals = await all_final(client, ids)
    finally:
        kill_process(worker)

    assert killed > 0, "the worker held no connection to kill"
    for pid in run:
        assert finals[pid].status is ProposalStatus.COMPLETED, (pid, finals[pid].reasons)
    for pid in rest:
        assert finals[pid].status is ProposalStatus.REJECTED, (pid, finals[pid].status)
    check_changes(drill_lab, finals)
    check_audit(settings, finals)

"""Fail closed: with the audit store refusing writes after approval, no playbook starts; the
workflow keeps retrying (through a worker restart), and runs once the store takes writes again.

PostgreSQL only: a role whose INSERT right is revoked is a store that is up but cannot be
written (on SQLite the tests run as root, whom file permissions do not stop).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from interlock.audit import open_store
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from interlock.worker.main import build_worker
from tests.integration.audit.conftest import PG_URL, Backend, pg_dsn, with_options
from tests.integration.audit.workflow_support import audit_settings, wait_for
from tests.support import approve, final, make_proposal, propose


@pytest.fixture
def limited_backend(tmp_path: Path) -> Iterator[tuple[Backend, str]]:
    """A schema owned by a login role of its own (not a superuser), dropped afterwards."""
    role = f"interlock_fc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"')
    url = with_options(PG_URL.replace("postgres@", f"{role}@"), search_path=role)
    try:
        yield Backend("postgresql", url, admin=None, schema=role), role  # type: ignore[arg-type]
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{role}" CASCADE')
            conn.execute(f'DROP ROLE "{role}"')


def lab_changes(lab: Lab) -> str:
    path = lab.root / "changes.jsonl"
    return path.read_text() if path.exists() else ""


async def audit_attempts(client: Client, proposal_id: str) -> int:
    desc = await client.get_workflow_handle(proposal_id).describe()
    return max(
        (
            p.attempt
            for p in desc.raw_description.pending_activities
            if p.activity_type.name in ("record_audit_event", "record_audit_events")
        ),
        default=0,
    )


async def test_store_down_before_execution_nothing_runs(
    client: Client,
    settings: Settings,
    alerting_lab: Lab,
    tmp_path: Path,
    limited_backend: tuple[Backend, str],
) -> None:
    backend, role = limited_backend
    s = audit_settings(settings, tmp_path / "home", backend)
    proposal = make_proposal(s, "restart_service")
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    before_pid = alerting_lab.status()["services"]["checkout-api"]["pid"]

    async with build_worker(client, s, task_queue):
        state = await propose(client, s, task_queue, proposal)
        assert state.status is ProposalStatus.AWAITING_APPROVAL
        changes_before = lab_changes(alerting_lab)
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'REVOKE INSERT ON "{role}".audit_events FROM "{role}"')
        # Not awaited: the approval is answered only once the workflow acts on it.
        answer = asyncio.create_task(approve(client, proposal.proposal_id))
        await wait_for(lambda: _at_least(client, proposal.proposal_id, 2), timeout=60, what="audit retries")
    # A worker restart while the store is down: the new worker picks the retries up.
    async with build_worker(client, s, task_queue):
        await wait_for(
            lambda: _at_least(client, proposal.proposal_id, 3), timeout=60, what="retries after restart"
        )
        assert lab_changes(alerting_lab) == changes_before, "nothing may run while the store is down"
        assert alerting_lab.status()["services"]["checkout-api"]["pid"] == before_pid
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'GRANT INSERT ON "{role}".audit_events TO "{role}"')
        done = await final(client, proposal.proposal_id)
        assert (await answer).approver == "alice"

    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert alerting_lab.status()["services"]["checkout-api"]["pid"] != before_pid
    records = [json.loads(line) for line in lab_changes(alerting_lab).splitlines() if line.strip()]
    restarts = [
        r
        for r in records
        if r.get("event") == "restart" and str(r.get("key", "")).startswith(proposal.proposal_id)
    ]
    assert len(restarts) == 1
    with open_store(s) as store:
        events = store.timeline(proposal.proposal_id)
        kinds = [e.kind for e in events]
        assert kinds.count("decision") == 1 and kinds.count("execution_started") == 1
        assert len({e.event_id for e in events}) == len(events)
        assert store.verify().ok


async def _at_least(client: Client, proposal_id: str, attempts: int) -> bool:
    return await audit_attempts(client, proposal_id) >= attempts

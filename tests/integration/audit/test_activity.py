"""The record_audit_event activity writes through to the store, and raises when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from interlock.activities.audit import AuditRecorder
from interlock.audit import open_store
from interlock.audit.events import AuditBatch
from interlock.audit.store import AuditStoreError
from interlock.settings import Settings
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import event


def settings_for(backend: Backend, home: Path) -> Settings:
    url = backend.url if backend.name == "postgresql" else None
    return Settings(home=home, database_url=url)


async def test_records_events_and_ignores_retries(backend: Backend, tmp_path: Path) -> None:
    recorder = AuditRecorder(settings_for(backend, tmp_path / "home"))
    env = ActivityEnvironment()
    try:
        await env.run(recorder.record_event, event("p-1", "submitted"))
        await env.run(recorder.record_event, event("p-1", "evidence_checked", 1))
        await env.run(recorder.record_event, event("p-1", "submitted"))  # a retry
    finally:
        recorder.close()

    with open_store(settings_for(backend, tmp_path / "home")) as store:
        assert [e.event_id for e in store.events()] == ["p-1/submitted/1", "p-1/evidence_checked/1"]
        assert store.verify().ok
    if backend.name == "sqlite":
        assert (tmp_path / "home" / "audit.db").exists()
    assert (tmp_path / "home" / "audit-head.json").exists()


async def test_a_batch_is_recorded_in_order_and_retried_whole(backend: Backend, tmp_path: Path) -> None:
    recorder = AuditRecorder(settings_for(backend, tmp_path / "home"))
    env = ActivityEnvironment()
    batch = AuditBatch(events=[event("p-1", "submitted"), event("p-1", "evidence_checked", 1)])
    try:
        await env.run(recorder.record_events, batch)
        await env.run(recorder.record_events, batch)  # a retry after a lost completion
        with pytest.raises(ApplicationError) as raised:
            await env.run(
                recorder.record_events,
                AuditBatch(events=[event("p-1", "risk_assessed", 2), event("p-1", "submitted", 99)]),
            )
    finally:
        recorder.close()

    assert raised.value.type == "AuditEventIdConflict"
    with open_store(settings_for(backend, tmp_path / "home")) as store:
        # The conflicting batch wrote nothing, not even its first event.
        assert [e.event_id for e in store.events()] == ["p-1/submitted/1", "p-1/evidence_checked/1"]
        assert store.verify().ok


async def test_fails_closed_when_the_store_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on port 1: the write fails and the activity must raise so it is retried.
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    recorder = AuditRecorder(Settings(home=tmp_path, database_url=unreachable))
    with pytest.raises(AuditStoreError, match="cannot migrate"):
        await ActivityEnvironment().run(recorder.record_event, event("p-1", "submitted"))


async def test_a_reused_event_id_is_not_retried(tmp_path: Path) -> None:
    recorder = AuditRecorder(Settings(home=tmp_path, database_url=None))
    env = ActivityEnvironment()
    try:
        await env.run(recorder.record_event, event("p-1", "submitted"))
        with pytest.raises(ApplicationError) as raised:
            await env.run(recorder.record_event, event("p-1", "submitted", 99))
    finally:
        recorder.close()
    assert raised.value.non_retryable
    assert raised.value.type == "AuditEventIdConflict"

"""Audit activity: appends the workflow's audit events to the hash-chained audit store.

It fails closed: when the store cannot be written the activity raises, and the workflow's retry
policy keeps trying rather than going on unaudited.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from temporalio import activity
from temporalio.exceptions import ApplicationError

from interlock.audit import open_store
from interlock.audit.events import AuditBatch, AuditEventIn, EventKind
from interlock.audit.standing import evaluate_graduation
from interlock.audit.store import AuditStore, EventIdConflict
from interlock.autonomy import GraduationInput, GraduationResult
from interlock.contracts import Activity
from interlock.policy import load_policy
from interlock.settings import Settings
from interlock.tracing import current_trace_id

log = logging.getLogger(__name__)


class AuditRecorder:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: AuditStore | None = None
        self._opening = threading.Lock()

    def store(self) -> AuditStore:
        # Opened (and migrated) on first use, so a worker starts while the database is down
        # and its audit activities retry until it is back.
        with self._opening:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    def close(self) -> None:
        with self._opening:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _append(self, events: list[AuditEventIn]) -> None:
        try:
            results = self.store().append_many(events)
        except EventIdConflict as exc:
            # Retrying cannot help: the workflow reused an id for a different event.
            raise ApplicationError(str(exc), type="AuditEventIdConflict", non_retryable=True) from exc
        for event, result in zip(events, results, strict=True):
            log.debug(
                "audit event %s is row %d%s",
                event.event_id,
                result.seq,
                " (already recorded)" if result.duplicate else "",
            )

    @staticmethod
    def _traced(event: AuditEventIn) -> AuditEventIn:
        if event.trace_id is None:
            # The proposal's trace (carried from submission in the workflow's headers); the same
            # on every retry and replay, so the event's content and hash stay deterministic.
            trace_id = current_trace_id()
            if trace_id is not None:
                return event.model_copy(update={"trace_id": trace_id})
        return event

    @activity.defn(name=Activity.RECORD_AUDIT_EVENT)
    async def record_event(self, event: AuditEventIn) -> None:
        # The database client blocks; keep it off the worker's event loop.
        await asyncio.to_thread(self._append, [self._traced(event)])

    @activity.defn(name=Activity.RECORD_AUDIT_EVENTS)
    async def record_events(self, batch: AuditBatch) -> None:
        """Events the workflow recorded back to back, written in one transaction: all or none."""
        await asyncio.to_thread(self._append, [self._traced(e) for e in batch.events])

    @activity.defn(name=Activity.EVALUATE_GRADUATION)
    async def evaluate_graduation(self, inp: GraduationInput) -> GraduationResult:
        """After a final status: promote or demote the recommender's model version when its record
        says so (a `mode_changed` event), which the next proposal's checks then apply."""
        return await asyncio.to_thread(self._evaluate, inp)

    def _evaluate(self, inp: GraduationInput) -> GraduationResult:
        policy = load_policy(self.settings.effective_policy_file)
        if not policy.graduation:
            return GraduationResult()
        return GraduationResult(changes=evaluate_graduation(self.store(), policy, inp))

    def execution_runs(self, proposal_id: str) -> set[str]:
        """The workflow runs that recorded starting this proposal's change (from event ids, which
        name their run): a reset run finds the run before it here."""
        return {
            parts[1]
            for event in self.store().timeline(proposal_id)
            if event.kind == EventKind.EXECUTION_STARTED.value
            and len(parts := event.event_id.split("/")) >= 4
        }

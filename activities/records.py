"""Interlock's own record of what it did, read from Temporal visibility.

Each proposal is a workflow carrying the search attributes InterlockService,
InterlockRecommender and InterlockStatus, so the record of executions (for the `changes`
evidence source and the recent-change risk factor) and a recommender's track record are
queries, not a second database. Counted per task queue: one task queue is one Interlock
deployment, and tests get one each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.service import RPCError

from interlock.models import ProposalState, ProposalStatus
from interlock.risk import RecentChange, TrackRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

# Statuses of a proposal whose playbook ran (or is running): a change to the service.
EXECUTED = (
    ProposalStatus.EXECUTING,
    ProposalStatus.VERIFYING,
    ProposalStatus.ROLLING_BACK,
    ProposalStatus.COMPLETED,
    ProposalStatus.COMPLETED_UNRESOLVED,
    ProposalStatus.ROLLED_BACK,
    ProposalStatus.NEEDS_MANUAL_INTERVENTION,
)
# How many executions are read in full (for their release) per change-records lookup.
MAX_CHANGE_RECORDS = 20
# Checks made within this many seconds of each other share one visibility answer. In an alert
# storm every proposal would otherwise ask the server the same five questions, and on a small
# server those queries, not the workflows, become the bottleneck. Visibility itself lags the
# workflows by about a second, so the record was never more exact than this.
FACTS_MAX_AGE_SECONDS = 5


class VisibilityCache:
    """Answers to visibility queries, shared for FACTS_MAX_AGE_SECONDS; concurrent asks of one
    query wait for the same answer. Failures are not kept."""

    def __init__(self, max_age: float = FACTS_MAX_AGE_SECONDS):
        self.max_age = max_age
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entries: dict[str, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._entries = loop, {}
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is None or now - hit[0] >= self.max_age:
            if len(self._entries) > 512:
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.max_age}
            future = asyncio.ensure_future(fetch())
            future.add_done_callback(lambda f: self._forget_failure(key, f))
            hit = self._entries[key] = (now, future)
        # Shielded: one check cancelled must not cancel the answer others wait for.
        return await asyncio.shield(hit[1])

    def _forget_failure(self, key: str, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is future:
                del self._entries[key]


class RecordsUnavailable(RuntimeError):
    """Visibility could not answer (e.g. a server without Interlock's search attributes)."""


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _statuses(statuses: tuple[ProposalStatus, ...]) -> str:
    return "(" + ", ".join(_quote(s.value) for s in statuses) + ")"


def _window_start(now: datetime, window: timedelta) -> str:
    # Rounded down to the cache's granularity, so checks moments apart ask the same query.
    start = (now - window).timestamp()
    return _stamp(datetime.fromtimestamp(start - start % FACTS_MAX_AGE_SECONDS, UTC))


class ExecutionRecords:
    def __init__(self, client: Client, task_queue: str, cache: VisibilityCache | None = None):
        # Without a cache every check asks the server itself.
        self.client = client
        self.task_queue = task_queue
        self.cache = cache

    async def _count(self, query: str) -> int:
        async def ask() -> int:
            try:
                return (await self.client.count_workflows(query)).count
            except RPCError as err:
                raise RecordsUnavailable(f"visibility query failed: {err.message}") from err

        return await self.cache.get(f"count:{query}", ask) if self.cache else await ask()

    async def track_record(self, recommender: str, window: timedelta, now: datetime) -> TrackRecord:
        base = (
            f"TaskQueue = {_quote(self.task_queue)} AND InterlockRecommender = {_quote(recommender)}"
            f" AND ExecutionStatus != 'Running' AND CloseTime > {_quote(_window_start(now, window))}"
        )

        async def count(*statuses: ProposalStatus) -> int:
            # A preview that never reached a host judged nothing: not part of the track record.
            judged = f" AND InterlockStatus != {_quote(ProposalStatus.PREVIEW_FAILED.value)}"
            extra = f" AND InterlockStatus IN {_statuses(statuses)}" if statuses else judged
            return await self._count(base + extra)

        # Side by side: each is a round trip to the server, on the path to the first response.
        finished, rejected, rolled_back, unresolved = await asyncio.gather(
            count(),
            count(ProposalStatus.REJECTED),
            count(ProposalStatus.ROLLED_BACK, ProposalStatus.NEEDS_MANUAL_INTERVENTION),
            count(ProposalStatus.COMPLETED_UNRESOLVED),
        )
        return TrackRecord(
            finished=finished, rejected=rejected, rolled_back=rolled_back, unresolved=unresolved
        )

    async def recent_changes(
        self, service: str, window: timedelta, now: datetime, exclude: str = ""
    ) -> list[RecentChange]:
        query = (
            f"TaskQueue = {_quote(self.task_queue)} AND InterlockService = {_quote(service)}"
            f" AND InterlockStatus IN {_statuses(EXECUTED)}"
            f" AND (ExecutionStatus = 'Running' OR CloseTime > {_quote(_window_start(now, window))})"
        )

        async def ask() -> list[RecentChange]:
            changes: list[RecentChange] = []
            try:
                async for wf in self.client.list_workflows(query, limit=MAX_CHANGE_RECORDS + 1):
                    attrs = wf.search_attributes
                    changes.append(
                        RecentChange(
                            proposal_id=wf.id,
                            action=str((attrs.get("InterlockAction") or ["?"])[0]),
                            status=str((attrs.get("InterlockStatus") or ["?"])[0]),
                            at=wf.close_time,
                        )
                    )
            except RPCError as err:
                raise RecordsUnavailable(f"visibility query failed: {err.message}") from err
            return changes

        changes = await self.cache.get(f"list:{query}", ask) if self.cache else await ask()
        return [c for c in changes if c.proposal_id != exclude][:MAX_CHANGE_RECORDS]

    async def change_records(self, service: str) -> list[dict[str, Any]]:
        """Deploys Interlock ran on `service`, in the shape the `changes` connector reads:
        {"release", "status", "finished_at", "proposal_id"}. Only finished proposals count."""
        query = (
            f"TaskQueue = {_quote(self.task_queue)} AND InterlockService = {_quote(service)}"
            f" AND InterlockStatus IN {_statuses(EXECUTED)} AND ExecutionStatus != 'Running'"
        )
        records: list[dict[str, Any]] = []
        async for wf in self.client.list_workflows(query, limit=MAX_CHANGE_RECORDS):
            handle = self.client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=ProposalState)
            state = await handle.result()
            execution = state.execution
            release = (execution.facts.get("release") if execution else None) or (
                state.proposal.parameters.get("release")
            )
            if execution is None or not release:
                continue
            deployed = execution.ok and state.status in (
                ProposalStatus.COMPLETED,
                ProposalStatus.COMPLETED_UNRESOLVED,
            )
            records.append(
                {
                    "release": release,
                    "status": "completed" if deployed else state.status.value,
                    "finished_at": execution.finished_at,
                    "proposal_id": state.proposal.proposal_id,
                    "action": state.proposal.action,
                }
            )
        return records

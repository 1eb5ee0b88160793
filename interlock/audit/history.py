"""Workflow histories for auditors: replay them for determinism, read their decision timeline,
reconcile them with the audit store, and bundle one proposal's evidence for offline checking.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import multiprocessing
import multiprocessing.context
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner

from interlock.audit.events import AuditEventIn, EventKind
from interlock.contracts import Activity, Workflow
from interlock.signing import TokenRefused, decode_claims, verify
from interlock.temporal import DATA_CONVERTER

if TYPE_CHECKING:
    from interlock.audit.store import AuditStore
    from interlock.policy import Policy

WORKFLOW_TYPE = Workflow.REMEDIATION.value
AUDIT_ACTIVITY = Activity.RECORD_AUDIT_EVENT.value
AUDIT_BATCH_ACTIVITY = Activity.RECORD_AUDIT_EVENTS.value  # {"events": [...]}: one transaction


class HistoryInvalid(ValueError):
    """The file is not a workflow history Interlock can read."""


def load_history(text: str, fallback_id: str) -> WorkflowHistory:
    """A history as `temporal workflow show --output json` or the Web UI's download writes it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryInvalid(f"not JSON: {exc}") from None
    if isinstance(doc, list):
        doc = {"events": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list) or not doc["events"]:
        raise HistoryInvalid('no "events" list: export it with `temporal workflow show --output json`')
    first = doc["events"][0]
    attrs = first.get("workflowExecutionStartedEventAttributes") or {}
    workflow_id = attrs.get("workflowId") or _proposal_id_of(attrs) or fallback_id
    try:
        return WorkflowHistory.from_json(workflow_id, doc)
    except Exception as exc:  # protobuf's parse errors have no common base
        raise HistoryInvalid(f"not a Temporal history: {str(exc).splitlines()[0][:200]}") from None


def _proposal_id_of(started_attrs: dict[str, Any]) -> str | None:
    try:
        payload = started_attrs["input"]["payloads"][0]
        return json.loads(base64.b64decode(payload["data"]))["proposal"]["proposal_id"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def replayer(*, sandboxed: bool = True, inline: bool = False) -> Replayer:
    """A Replayer of the remediation workflow with the worker's data converter.

    Sandboxed, it runs the workflow under the worker's own sandbox restrictions, so a call the
    sandbox refuses (clock, randomness, I/O) fails the replay as it would fail a live worker.
    Unsandboxed, replay still checks that the code issues the commands the history records.
    Inline (unsandboxed only, for bulk replay), each activation runs on the event loop's thread
    instead of a workflow thread, under replay_payloads' watchdog in place of the SDK's
    deadlock detection.
    """
    from interlock.audit.replay_payloads import (
        BULK_REPLAY_CONVERTER,
        inline_activations,
        skip_inert_payload_passes,
    )
    from interlock.workflows.remediation import RemediationWorkflow

    # DATA_CONVERTER has no codec and no external storage: the SDK's payload passes are no-ops.
    skip_inert_payload_passes()
    if inline and not sandboxed:
        inline_activations()
        return Replayer(
            workflows=[RemediationWorkflow],
            data_converter=BULK_REPLAY_CONVERTER,
            workflow_runner=UnsandboxedWorkflowRunner(),
            debug_mode=True,  # the SDK's inline activations (it also sets sys.breakpointhook)
        )
    runner: WorkflowRunner
    if sandboxed:
        from interlock.sandbox import workflow_runner

        runner = workflow_runner()
    else:
        runner = UnsandboxedWorkflowRunner()
    return Replayer(workflows=[RemediationWorkflow], data_converter=DATA_CONVERTER, workflow_runner=runner)


def _why(failure: BaseException | None) -> str | None:
    if failure is None:
        return None
    return f"{type(failure).__name__}: {failure}".splitlines()[0][:500]


async def replay(history: WorkflowHistory, *, sandboxed: bool = True) -> str | None:
    """None when today's workflow code makes the same decisions as the history; else why not."""
    result = await replayer(sandboxed=sandboxed).replay_workflow(history, raise_on_replay_failure=False)
    return _why(result.replay_failure)


# --- Replaying many histories ---------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOutcome:
    """One history's replay: error is None when today's code makes the decisions it records."""

    workflow_id: str
    run_id: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_jobs() -> int:
    return os.cpu_count() or 1


async def replay_many(
    histories: Sequence[WorkflowHistory], *, jobs: int | None = None, sandboxed: bool = False
) -> list[ReplayOutcome]:
    """Replay every history against today's code; one outcome per history, in the given order.

    One Replayer per process replays history after history. With jobs > 1 the histories are
    spread over that many fresh worker processes (forkserver or spawn, never a fork of this
    process, whose event loop and Temporal runtime must not be copied).
    """
    outcomes: list[ReplayOutcome | None] = [None] * len(histories)
    runnable: list[int] = []
    for i, history in enumerate(histories):
        if _starts(history):
            runnable.append(i)
        else:
            # The SDK's replayer panics on such a history and then never answers: refuse it here.
            outcomes[i] = ReplayOutcome(history.workflow_id, "", f"not replayed: {NOT_STARTED}")
    replayed = await _replay_spread([histories[i] for i in runnable], jobs or default_jobs(), sandboxed)
    for i, outcome in zip(runnable, replayed, strict=True):
        outcomes[i] = outcome
    assert None not in outcomes
    return cast(list[ReplayOutcome], outcomes)


NOT_STARTED = "the history does not begin with a WorkflowExecutionStarted event"


def _starts(history: WorkflowHistory) -> bool:
    return bool(history.events) and history.events[0].HasField("workflow_execution_started_event_attributes")


async def _replay_spread(histories: list[WorkflowHistory], jobs: int, sandboxed: bool) -> list[ReplayOutcome]:
    jobs = min(jobs, len(histories))
    if jobs <= 1:
        return await _replay_each(replayer(sandboxed=sandboxed, inline=True), histories)
    # Chunks, not single histories, so each process opens few replay iterators; several chunks
    # per process, so a process with long histories does not hold up the end of the run.
    size = max(1, min(_CHUNK_MAX, math.ceil(len(histories) / (jobs * 4))))
    chunks = [histories[i : i + size] for i in range(0, len(histories), size)]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_process_context(sandboxed)) as pool:
        done = await asyncio.gather(
            *(
                # Serialized protobuf, not to_json(): JSON costs about 25 ms a history each way
                # (more than replaying it); the bytes are Temporal's own wire format.
                loop.run_in_executor(pool, _replay_chunk, [_encoded(h) for h in chunk], sandboxed)
                for chunk in chunks
            ),
            return_exceptions=True,
        )
    outcomes: list[ReplayOutcome] = []
    for chunk, result in zip(chunks, done, strict=True):
        if isinstance(result, BaseException):
            # The process died or the replay could not run: each of its histories is a failure.
            error = f"not replayed: {_why(result)}"
            outcomes += [ReplayOutcome(h.workflow_id, h.run_id, error) for h in chunk]
        else:
            outcomes += result
    return outcomes


_CHUNK_MAX = 50


def _process_context(sandboxed: bool) -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # The fork server (one per process) imports these once and each worker process forks
        # from it ready to replay. Two histories in a pool of two took 1.2 s the first time,
        # 0.35 s once the fork server ran; with spawn, 3.5 s every time.
        modules = ["interlock.audit.history", "interlock.workflows.remediation"]
        context.set_forkserver_preload([*modules, "interlock.sandbox"] if sandboxed else modules)
        return context
    return multiprocessing.get_context("spawn")


def _encoded(history: WorkflowHistory) -> tuple[str, bytes]:
    return history.workflow_id, History(events=history.events).SerializeToString()


@functools.cache
def _process_replayer(sandboxed: bool) -> Replayer:
    return replayer(sandboxed=sandboxed, inline=True)


def _replay_chunk(encoded: list[tuple[str, bytes]], sandboxed: bool) -> list[ReplayOutcome]:
    """In a worker process: replay a chunk with the process's one Replayer."""
    histories = [WorkflowHistory(wid, History.FromString(data).events) for wid, data in encoded]
    return asyncio.run(_replay_each(_process_replayer(sandboxed), histories))


async def _replay_each(engine: Replayer, histories: list[WorkflowHistory]) -> list[ReplayOutcome]:
    outcomes: list[ReplayOutcome] = []

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    try:
        async with engine.workflow_replay_iterator(each()) as results:
            async for result in results:
                h = result.history
                outcomes.append(ReplayOutcome(h.workflow_id, h.run_id, _why(result.replay_failure)))
    except Exception as exc:  # noqa: BLE001 - the replay worker failed: report, never drop, the rest
        error = f"not replayed: {_why(exc)}"
        outcomes += [ReplayOutcome(h.workflow_id, h.run_id, error) for h in histories[len(outcomes) :]]
    return outcomes


# --- Reading a history ----------------------------------------------------------------------


def _payloads(container: Any) -> list[Any]:
    """Decoded JSON payloads of an input or result (None for one that is not JSON)."""
    values = []
    for payload in getattr(container, "payloads", []):
        try:
            values.append(json.loads(payload.data))
        except (ValueError, UnicodeDecodeError):
            values.append(None)
    return values


def _first(container: Any) -> Any:
    values = _payloads(container)
    return values[0] if values else None


@dataclass
class TimelineItem:
    at: datetime
    event_id: int
    what: str
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "event_id": self.event_id,
            "what": self.what,
            "detail": self.detail,
        }


@dataclass
class HistoryFacts:
    """What a history says about a proposal, decoded from its payloads."""

    workflow_id: str
    proposal_id: str | None = None
    timeline: list[TimelineItem] = field(default_factory=list)
    # The audit events the workflow asked to record and that were recorded (activity completed).
    audit_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every audit event the workflow asked for, recorded or still in flight.
    audit_requested: set[str] = field(default_factory=set)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    closed: bool = False
    run_id: str = ""
    # How the run closed (completed, failed, terminated, canceled, timed_out, continued_as_new).
    close: str | None = None
    close_reason: str = ""


def _activity_summary(name: str, value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    if name == Activity.CHECK_PROPOSAL:
        reasons = "; ".join(value.get("reasons") or [])
        return f"{'passed' if value.get('ok') else 'failed'}, policy {value.get('policy_version')}" + (
            f": {reasons}" if reasons else ""
        )
    if name == Activity.RUN_PLAYBOOK:
        return _playbook_summary(value)
    if name == Activity.RUN_CHANGE:
        # A change and its check from one Ansible run: each stage on its own, as if run apart.
        parts = [value.get("change"), value.get("check")]
        return "; ".join(_playbook_summary(p) for p in parts if isinstance(p, dict)) + (
            "" if isinstance(value.get("check"), dict) else "; its check did not run"
        )
    return ""


def _playbook_summary(value: dict[str, Any]) -> str:
    tasks = value.get("tasks") or []
    changed = sum(1 for t in tasks if t.get("changed"))
    error = f": {value['error']}" if value.get("error") else ""
    return (
        f"{value.get('stage')}: {value.get('playbook')} {value.get('status')}, "
        f"{len(tasks)} task(s), {changed} changed{error}"
    )


def _audit_events(activity_type: str, inp: Any) -> list[dict[str, Any]]:
    """The audit events an activity's input asks to record (none for other activities)."""
    if activity_type == AUDIT_ACTIVITY:
        candidates = [inp]
    elif activity_type == AUDIT_BATCH_ACTIVITY and isinstance(inp, dict):
        candidates = inp.get("events") or []
    else:
        return []
    return [e for e in candidates if isinstance(e, dict) and e.get("event_id")]


def read_history(history: WorkflowHistory) -> HistoryFacts:
    """The decision timeline: submission, checks, playbooks, decisions, signals, timers, outcome."""
    facts = HistoryFacts(history.workflow_id, run_id=history.run_id if _starts(history) else "")
    scheduled: dict[int, tuple[str, Any]] = {}
    updates: dict[str, tuple[str, Any]] = {}
    attrs: Any  # one event kind's attributes at a time
    for event in history.events:
        at = event.event_time.ToDatetime(tzinfo=UTC)
        item = TimelineItem(at, event.event_id, "")
        kind = event.WhichOneof("attributes")
        if kind == "workflow_execution_started_event_attributes":
            inp = _first(event.workflow_execution_started_event_attributes.input) or {}
            p = inp.get("proposal") or {}
            target = p.get("target") or {}
            item.what = "submitted"
            facts.proposal_id = p.get("proposal_id")
            item.detail = (
                f"{p.get('action')} on {target.get('service')} ({target.get('environment')}) "
                f"by {p.get('recommender')} {p.get('model_version') or ''}, "
                f"confidence {p.get('confidence')}"
            )
        elif kind == "activity_task_scheduled_event_attributes":
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, _first(attrs.input))
            for audit_event in _audit_events(attrs.activity_type.name, scheduled[event.event_id][1]):
                facts.audit_requested.add(audit_event["event_id"])
            continue
        elif kind == "activity_task_completed_event_attributes":
            attrs = event.activity_task_completed_event_attributes
            name, inp = scheduled.get(attrs.scheduled_event_id, ("?", None))
            if name in (AUDIT_ACTIVITY, AUDIT_BATCH_ACTIVITY):
                for audit_event in _audit_events(name, inp):
                    facts.audit_events[audit_event["event_id"]] = audit_event
                continue
            if name == Activity.NOTIFY:
                continue
            item.what = name
            item.detail = _activity_summary(name, _first(attrs.result))
        elif kind == "activity_task_failed_event_attributes":
            attrs = event.activity_task_failed_event_attributes
            name, _ = scheduled.get(attrs.scheduled_event_id, ("?", None))
            item.what = f"{name} failed"
            item.detail = attrs.failure.message[:200]
        elif kind == "workflow_execution_update_accepted_event_attributes":
            attrs = event.workflow_execution_update_accepted_event_attributes
            request = attrs.accepted_request
            name = request.input.name
            arg = _first(request.input.args) or {}
            updates[attrs.protocol_instance_id] = (name, arg)
            item.what = f"decision: {name}"
            token = arg.get("token") if isinstance(arg, dict) else None
            if token:
                try:
                    claims = decode_claims(token)
                    item.detail = f"{claims.approver} (signed token): {claims.reason}"
                    facts.tokens.append(
                        {"event_id": event.event_id, "at": at, "update": name, "token": token}
                    )
                except ValueError:
                    item.detail = "unreadable token"
            elif isinstance(arg, dict):
                item.detail = f"{arg.get('approver')} (unsigned): {arg.get('reason', '')}"
        elif kind == "workflow_execution_signaled_event_attributes":
            attrs = event.workflow_execution_signaled_event_attributes
            arg = _first(attrs.input)
            item.what = f"signal: {attrs.signal_name}"
            if isinstance(arg, dict):
                item.detail = ", ".join(f"{k}={v}" for k, v in arg.items() if v not in (None, False, "", {}))
        elif kind == "timer_fired_event_attributes":
            item.what = "timer fired"
            item.detail = "approval deadline reached (escalation or expiry)"
        elif kind == "workflow_execution_completed_event_attributes":
            result = _first(event.workflow_execution_completed_event_attributes.result)
            facts.result = result if isinstance(result, dict) else None
            facts.closed, facts.close = True, "completed"
            item.what = "final"
            if facts.result:
                item.detail = f"{facts.result.get('status')}: " + "; ".join(facts.result.get("reasons") or [])
        elif kind in (
            "workflow_execution_failed_event_attributes",
            "workflow_execution_terminated_event_attributes",
            "workflow_execution_canceled_event_attributes",
            "workflow_execution_timed_out_event_attributes",
        ):
            facts.closed = True
            facts.close = kind.removeprefix("workflow_execution_").removesuffix("_event_attributes")
            item.what = "closed: " + facts.close
            attrs = getattr(event, kind)
            reason = getattr(attrs, "reason", "") or getattr(getattr(attrs, "failure", None), "message", "")
            who = getattr(attrs, "identity", "")
            # The identity is the client's own claim (forgeable), but says which tool it was.
            item.detail = facts.close_reason = str(reason)[:200] + (f", by {who[:100]}" if who else "")
        elif kind == "workflow_execution_continued_as_new_event_attributes":
            facts.closed, facts.close = True, "continued_as_new"
            item.what = "continued as new"
        else:
            continue
        facts.timeline.append(item)
    return facts


def history_json(history: WorkflowHistory) -> str:
    """The history as `temporal workflow show --output json` writes it."""
    return history.to_json()


async def closed_histories(client: Client, since: timedelta | None) -> list[WorkflowHistory]:
    query = f'WorkflowType = "{WORKFLOW_TYPE}" AND ExecutionStatus != "Running"'
    if since is not None:
        start = (datetime.now(UTC) - since).strftime("%Y-%m-%dT%H:%M:%SZ")
        query += f' AND CloseTime >= "{start}"'
    histories = []
    async for wf in client.list_workflows(query):
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        histories.append(await handle.fetch_history())
    return histories


async def all_histories(client: Client, since: timedelta | None) -> list[WorkflowHistory]:
    """Every proposal's history still on the server (open ones too), newest runs included."""
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if since is not None:
        start = (datetime.now(UTC) - since).strftime("%Y-%m-%dT%H:%M:%SZ")
        query += f' AND StartTime >= "{start}"'
    histories = []
    async for wf in client.list_workflows(query):
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        histories.append(await handle.fetch_history())
    return histories


# --- Reconcile ------------------------------------------------------------------------------


@dataclass
class Difference:
    proposal_id: str
    problem: str
    event_id: str | None
    detail: str
    # The run a run-level problem (terminated, no_final) is about.
    run_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id,
            "problem": self.problem,
            "event_id": self.event_id,
            "detail": self.detail,
            "run_id": self.run_id,
        }


_COMPARED = ("proposal_id", "kind", "actor", "status", "recommender", "model_version", "action", "data")


def compare(facts: HistoryFacts, store: AuditStore) -> list[Difference]:
    """Differences between what one history says was recorded and what the store holds."""
    diffs: list[Difference] = []
    expected = facts.audit_events
    pid = facts.proposal_id or facts.workflow_id
    rows = {row.event_id: row for row in store.timeline(pid)}
    for event_id, inp in expected.items():
        row = rows.get(event_id)
        if row is None:
            diffs.append(
                Difference(
                    pid,
                    "missing",
                    event_id,
                    f"the history shows the {inp.get('kind')} event recorded, the store has no such row",
                )
            )
            continue
        try:
            want = AuditEventIn.model_validate(inp).model_dump(mode="json")
        except ValueError:
            continue
        have = {k: getattr(row, k) for k in _COMPARED}
        changed = [
            k
            for k in _COMPARED
            if json.dumps(want.get(k), sort_keys=True) != json.dumps(have[k], sort_keys=True)
        ]
        if row.at != datetime.fromisoformat(want["at"]):
            changed.append("at")
        if changed:
            diffs.append(
                Difference(
                    pid,
                    "differs",
                    event_id,
                    f"row {row.seq} differs from the history in {', '.join(changed)}",
                )
            )
    for event_id, row in rows.items():
        if (
            event_id not in facts.audit_requested
            and row.kind != EventKind.AUDIT_EXCEPTION
            and _same_run(event_id, facts)
        ):
            diffs.append(
                Difference(
                    pid, "unknown", event_id, f"row {row.seq} ({row.kind}) is not in the workflow's history"
                )
            )
    diffs += _how_it_ended(facts, pid, rows)
    return diffs


# Closes after which the workflow itself had no chance to record its end.
_ABRUPT = ("terminated", "timed_out")


def _how_it_ended(facts: HistoryFacts, pid: str, rows: dict[str, Any]) -> list[Difference]:
    """A terminated run (its workflow code never saw it coming) and a run that closed without a
    `final` event: each is a way a proposal ended that the audit store does not explain."""
    if facts.close is None or facts.close == "continued_as_new":
        return []
    run = facts.run_id or "?"
    if facts.close == "terminated":
        reason = f" ({facts.close_reason})" if facts.close_reason else ""
        return [
            Difference(
                pid,
                "terminated",
                None,
                f"run {run} was terminated{reason}: nothing the workflow did after that is recorded, "
                "and it recorded no final event",
                run_id=run,
            )
        ]
    recorded = any(e.get("kind") == EventKind.FINAL.value for e in facts.audit_events.values())
    stored = any(row.kind == EventKind.FINAL for row in rows.values())
    if recorded or stored:
        return []  # a final event the history shows recorded but the store lacks is "missing"
    how = "timed out" if facts.close in _ABRUPT else facts.close
    return [
        Difference(pid, "no_final", None, f"run {run} closed ({how}) without a final audit event", run_id=run)
    ]


def histories_gone(
    store: AuditStore, have: set[str], since: timedelta | None, only: list[str] | None = None
) -> tuple[list[Difference], int]:
    """Store proposals with no workflow left on the server: (differences, how many had ended).

    One that ended (a `final` event) was most likely purged after the namespace's retention, and
    the store is the record that outlives it: counted, not an exception. One that had not ended
    lost its history while open: an exception.
    """
    from sqlalchemy import select

    from interlock.audit.store import TABLE

    query = select(TABLE.c.proposal_id, TABLE.c.seq).where(TABLE.c.kind == EventKind.SUBMITTED.value)
    if since is not None:
        query = query.where(TABLE.c.at >= datetime.now(UTC) - since)
    if only is not None:
        query = query.where(TABLE.c.proposal_id.in_(only))
    with store.engine.connect() as conn:
        submitted = {pid: seq for pid, seq in conn.execute(query) if pid not in have}
        ended: set[str] = set()
        wanted = sorted(submitted)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            finals = select(TABLE.c.proposal_id).where(
                TABLE.c.kind == EventKind.FINAL.value, TABLE.c.proposal_id.in_(chunk)
            )
            ended.update(pid for (pid,) in conn.execute(finals))
    diffs = [
        Difference(
            pid,
            "history_gone",
            None,
            f"the store has this proposal (submitted at row {submitted[pid]}) and no final event, "
            "but the server has no workflow for it: its history was deleted",
        )
        for pid in wanted
        if pid not in ended
    ]
    return diffs, len(ended)


def _same_run(event_id: str, facts: HistoryFacts) -> bool:
    # Event ids are proposal/run_id/n/kind: only rows of the run this history covers are compared.
    runs = {eid.split("/")[1] for eid in facts.audit_requested if eid.count("/") >= 3}
    parts = event_id.split("/")
    return len(parts) >= 4 and parts[1] in runs


def record_exceptions(store: AuditStore, diffs: list[Difference]) -> int:
    """Record each difference once as an audit_exception event; returns how many are new."""
    new = 0
    for d in diffs:
        event_id = f"reconcile/{d.proposal_id}/{d.problem}/{d.event_id or d.run_id or '-'}"
        if store.exists(event_id):
            continue
        store.append(
            AuditEventIn(
                event_id=event_id[:200],
                proposal_id=d.proposal_id,
                kind=EventKind.AUDIT_EXCEPTION,
                at=datetime.now(UTC),
                actor="interlock audit reconcile",
                data=d.as_json(),
            )
        )
        new += 1
    return new


# --- Signature checks -----------------------------------------------------------------------


def check_signatures(facts: HistoryFacts, policy: Policy) -> list[dict[str, Any]]:
    """Each signed decision token re-verified against the policy's roster, at the time it was used."""
    plan = (facts.result or {}).get("plan_hash")
    previews = [e for e in facts.audit_events.values() if e.get("kind") == EventKind.PREVIEW.value]
    plans = {plan} | {(e.get("data") or {}).get("plan_hash") for e in previews}
    keys = {name: a.public_key for name, a in policy.roster.items()}
    checks = []
    for t in facts.tokens:
        claims = decode_claims(t["token"])
        outcome: dict[str, Any] = {
            "history_event_id": t["event_id"],
            "update": t["update"],
            "approver": claims.approver,
            "decision": claims.decision.value,
            "plan_hash": claims.plan_hash,
            "used_at": t["at"].isoformat(),
            "token": t["token"],
        }
        errors = []
        for candidate in sorted(p for p in plans if p):
            try:
                verify(
                    t["token"],
                    public_keys=keys,
                    proposal_id=facts.proposal_id or facts.workflow_id,
                    workflow_id=facts.workflow_id,
                    plan_hash=candidate,
                    now=t["at"],
                    seen_nonces=frozenset(),
                    max_lifetime=policy.token_max_lifetime,
                )
                outcome.update(valid=True, detail=f"signature by {claims.approver} verified")
                break
            except TokenRefused as exc:
                errors.append(str(exc))
        else:
            outcome.update(
                valid=False, detail="; ".join(dict.fromkeys(errors)) or "no plan hash to check against"
            )
        checks.append(outcome)
    return checks

"""Workflow histories for auditors: replay them for determinism, read their decision timeline,
reconcile them with the audit store, and bundle one proposal's evidence for offline checking.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from interlock.audit.events import AuditEventIn, EventKind
from interlock.signing import TokenRefused, decode_claims, verify

if TYPE_CHECKING:
    from interlock.audit.store import AuditStore
    from interlock.policy import Policy

WORKFLOW_TYPE = "RemediationWorkflow"
AUDIT_ACTIVITY = "record_audit_event"
AUDIT_BATCH_ACTIVITY = "record_audit_events"  # {"events": [...]}: one transaction


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


def replayer() -> Replayer:
    from workflows.remediation import RemediationWorkflow

    return Replayer(workflows=[RemediationWorkflow], data_converter=pydantic_data_converter)


async def replay(history: WorkflowHistory) -> str | None:
    """None when today's workflow code makes the same decisions as the history; else why not."""
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return None
    return f"{type(result.replay_failure).__name__}: {result.replay_failure}".splitlines()[0][:500]


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


def _activity_summary(name: str, value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    if name == "check_proposal":
        reasons = "; ".join(value.get("reasons") or [])
        return f"{'passed' if value.get('ok') else 'failed'}, policy {value.get('policy_version')}" + (
            f": {reasons}" if reasons else ""
        )
    if name == "run_playbook":
        tasks = value.get("tasks") or []
        changed = sum(1 for t in tasks if t.get("changed"))
        error = f": {value['error']}" if value.get("error") else ""
        return (
            f"{value.get('stage')}: {value.get('playbook')} {value.get('status')}, "
            f"{len(tasks)} task(s), {changed} changed{error}"
        )
    return ""


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
    facts = HistoryFacts(history.workflow_id)
    scheduled: dict[int, tuple[str, Any]] = {}
    updates: dict[str, tuple[str, Any]] = {}
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
            if name == "notify":
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
            facts.closed = True
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
            item.what = "closed: " + kind.removeprefix("workflow_execution_").removesuffix(
                "_event_attributes"
            )
            attrs = getattr(event, kind)
            reason = getattr(attrs, "reason", "") or getattr(getattr(attrs, "failure", None), "message", "")
            item.detail = str(reason)[:200]
        elif kind == "workflow_execution_continued_as_new_event_attributes":
            facts.closed = True
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

    def as_json(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id,
            "problem": self.problem,
            "event_id": self.event_id,
            "detail": self.detail,
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
    return diffs


def _same_run(event_id: str, facts: HistoryFacts) -> bool:
    # Event ids are proposal/run_id/n/kind: only rows of the run this history covers are compared.
    runs = {eid.split("/")[1] for eid in facts.audit_requested if eid.count("/") >= 3}
    parts = event_id.split("/")
    return len(parts) >= 4 and parts[1] in runs


def record_exceptions(store: AuditStore, diffs: list[Difference]) -> int:
    """Record each difference once as an audit_exception event; returns how many are new."""
    new = 0
    for d in diffs:
        event_id = f"reconcile/{d.proposal_id}/{d.problem}/{d.event_id or '-'}"
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

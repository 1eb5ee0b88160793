"""The remediation workflow's plumbing: its one state object, activity calls shielded from
cancellation, the audit trail, status, notifications and how a proposal is finished.

Orchestration only: every rule it applies is a pure function of interlock.gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from interlock import gate
    from interlock.audit.events import AuditBatch, AuditEventIn, EventKind
    from interlock.autonomy import GraduationInput, GraduationResult
    from interlock.contracts import Activity
    from interlock.governance import (
        ApprovalWait,
        Governance,
    )
    from interlock.models import (
        CancelRequest,
        DecisionKind,
        DecisionRecord,
        Notification,
        Pause,
        ProposalState,
        ProposalStatus,
        RiskTier,
        TimelineEntry,
    )
    from interlock.presentation import approval_details
    from interlock.search import SA_STATUS
    from interlock.workflows import patches

T = TypeVar("T")

CHECKS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
PLAYBOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["PlanChanged", "ParametersRefused", "AlreadyExecuted"],
)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# Fail closed: an audit write is retried until the store is back; nothing runs before it lands.
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["AuditEventIdConflict"],
)

# A flood of duplicates is counted in full but kept in full only this far (history and query size).
MAX_RECORDED_DUPLICATES = 50

# The workflow's patches, each with its exit plan: workflows/patches.py.
PLAYBOOK_QUEUE_PATCH = patches.PLAYBOOK_QUEUE.name
AUDIT_BATCH_PATCH = patches.AUDIT_BATCH.name
REDERIVE_PATCH = patches.REDERIVE.name
DUPLICATE_KEY_PATCH = patches.DUPLICATE_KEY.name
GRADUATION_PATCH = patches.GRADUATION.name
# A few tries only: the standing is judged again at the next final status anyway.
GRADUATION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


class WorkflowCore:
    """State and recording shared by the workflow's stages (the workflow class sets these up)."""

    _w: ApprovalWait | None
    _cancel: str | None
    _abort: bool
    _refusal: str
    _notifications: list[workflow.ActivityHandle[None]]
    _search_attributes: bool
    _audit_batching: bool
    _audit_queue: list[AuditEventIn]

    @property
    def w(self) -> ApprovalWait:
        assert self._w is not None
        return self._w

    @property
    def state(self) -> ProposalState:
        return self.w.state

    @property
    def gov(self) -> Governance:
        assert self.w.governance is not None
        return self.w.governance

    @property
    def tier(self) -> RiskTier:
        assert self.state.risk is not None
        return self.state.risk.tier

    def _view(self) -> gate.GateView:
        return gate.GateView(
            proposal=self.state.proposal,
            workflow_id=self.state.workflow_id,
            plan_hash=self.state.plan_hash,
            tier=self.tier,
            gov=self.gov,
            frozen=bool(self.state.freezes),
        )

    async def _finish(self, status: ProposalStatus, reasons: list[str]) -> ProposalState:
        self.state.reasons = reasons
        self.state.waiting_for = None
        self._set_status(status, "; ".join(reasons))
        if self.state.rejected_decision_pending():
            for d in self.state.decisions:
                if d.decision is DecisionKind.REJECT:
                    await self._audit_decision(d, later=True)
        for result in (self.state.verification, self.state.rollback):
            if result is not None:
                await self._audit(
                    EventKind.VERIFICATION if result is self.state.verification else EventKind.ROLLBACK,
                    data={"ok": result.ok, "error": result.error},
                    later=True,
                )
        await self._audit(EventKind.FINAL, data={"status": status.value, "reasons": reasons})
        workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        self._notify("outcome", f"{status.value}: {self._headline()}")
        if workflow.patched(GRADUATION_PATCH):
            await self._evaluate_graduation(status)
        await self._flush_notifications()
        # Let in-flight Update handlers return their answer before the workflow closes.
        await self._shielded(workflow.wait_condition(workflow.all_handlers_finished))
        return self.state

    async def _evaluate_graduation(self, status: ProposalStatus) -> None:
        """Judge the recommender's standing now that this proposal is final; the outcome is already
        recorded and never changes with it, and a failure only leaves the standing as it was."""
        p = self.state.proposal
        try:
            result = await self._activity(
                Activity.EVALUATE_GRADUATION,
                GraduationInput(
                    proposal_id=p.proposal_id,
                    recommender=p.recommender,
                    model_version=p.model_version,
                    action=p.action,
                    service=self.state.service.canonical if self.state.service else p.target.service,
                    environment=p.target.environment,
                    status=status.value,
                    at=workflow.now(),
                ),
                GraduationResult,
                timedelta(seconds=30),
                retry_policy=GRADUATION_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("the recommender's standing could not be judged")
            return
        for change in result.changes:
            self._notify("mode_changed", change.text())

    async def _finish_cancelled(self) -> ProposalState:
        """Temporal was asked to cancel this workflow (CLI, SDK, the Web UI): end it on record.

        Reached only at safe points: a change in flight always finishes, verifies (and rolls back)
        before the cancellation takes effect."""
        if not self._cancel:  # "" until looked up: who asked is in the run's history
            self._cancel = await self._activity(
                Activity.CANCEL_REQUESTED_BY,
                CancelRequest(workflow_id=workflow.info().workflow_id, run_id=workflow.info().run_id),
                str,
                timedelta(seconds=30),
            )
        return await self._finish(ProposalStatus.CANCELLED, [f"cancelled by {self._cancel}"])

    async def _refuse_input(self, reason: str) -> NoReturn:
        """Input that is not a proposal for this workflow id: recorded under the workflow's own
        id, nothing else written, and the run ends rejected_by_checks."""
        info = workflow.info()
        if self._search_attributes:
            workflow.upsert_search_attributes([SA_STATUS.value_set(ProposalStatus.REJECTED_BY_CHECKS.value)])
        reasons = [f"security: {reason}"]
        if self._w is not None:
            self.state.status, self.state.reasons = ProposalStatus.REJECTED_BY_CHECKS, reasons
        for seq, kind, data in (
            (1, EventKind.SECURITY, {"ok": False, "reasons": reasons}),
            (2, EventKind.FINAL, {"status": ProposalStatus.REJECTED_BY_CHECKS.value, "reasons": reasons}),
        ):
            await self._activity(
                Activity.RECORD_AUDIT_EVENT,
                AuditEventIn(
                    event_id=gate.audit_event_id(info.workflow_id, info.run_id, seq, kind.value),
                    proposal_id=info.workflow_id,
                    kind=kind,
                    at=workflow.now(),
                    status=ProposalStatus.REJECTED_BY_CHECKS.value,
                    data=data,
                ),
                None,
                timedelta(seconds=30),
                retry_policy=AUDIT_RETRY,
            )
        raise ApplicationError(
            f"{ProposalStatus.REJECTED_BY_CHECKS.value}: {reason}", type="ProposalRefused", non_retryable=True
        )

    async def _activity(
        self,
        name: str,
        arg: Any,
        result_type: type[T] | None,
        timeout: timedelta,
        *,
        retry_policy: RetryPolicy = CHECKS_RETRY,
        heartbeat_timeout: timedelta | None = None,
    ) -> T:
        """One activity, shielded: a cancellation request is remembered and takes effect at the
        next safe point, never halfway through a write or a check."""
        handle = workflow.start_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timeout,
            heartbeat_timeout=heartbeat_timeout,
            retry_policy=retry_policy,
        )
        return await self._shielded(handle)

    async def _shielded(self, aw: Awaitable[T]) -> T:
        task = asyncio.ensure_future(aw)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if self._cancel is None:
                    self._cancel = ""  # who asked is looked up at the safe point
                if task.done():
                    return task.result()

    async def _wait(self, condition: Callable[[], bool], timeout: timedelta | None = None) -> None:
        """wait_condition that also ends when cancellation is requested (raises TimeoutError)."""
        try:
            await workflow.wait_condition(lambda: condition() or self._cancel is not None, timeout=timeout)
        except asyncio.CancelledError:
            if self._cancel is None:
                self._cancel = ""

    async def _flush_notifications(self) -> None:
        for note in self._notifications:
            try:
                await self._shielded(note)
            except ActivityError:
                workflow.logger.warning("a notification could not be delivered")

    async def _audit_decision(self, d: DecisionRecord, later: bool = False) -> None:
        """One decision as an audit event: who, why, signed or not, by a person or the policy."""
        await self._audit(
            EventKind.DECISION,
            actor=d.approver,
            data={
                "decision": d.decision.value,
                "approver": d.approver,
                "reason": d.reason,
                "signed": d.signed,
                "human": d.human,
                "groups": d.groups,
            },
            later=later,
        )

    async def _audit(
        self,
        kind: EventKind,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
        later: bool = False,
    ) -> None:
        """One append-only audit event, with an id that is the same on every retry.

        `later`: keep it and write it with the next event, in one activity and one transaction.
        Only for events followed by workflow code that touches nothing before that next write:
        failing closed means no activity with an effect runs before what led to it is stored.
        """
        p = self.state.proposal
        self.w.audit_seq += 1
        event = AuditEventIn(
            event_id=gate.audit_event_id(p.proposal_id, workflow.info().run_id, self.w.audit_seq, kind.value),
            proposal_id=p.proposal_id,
            kind=kind,
            at=workflow.now(),
            actor=actor,
            status=self.state.status.value,
            recommender=p.recommender,
            model_version=p.model_version,
            action=p.action,
            service=self.state.service.canonical if self.state.service else p.target.service,
            risk_tier=self.state.risk.tier.value if self.state.risk else None,
            data=data or {},
        )
        if later and self._audit_batching:
            self._audit_queue.append(event)
            return
        events, self._audit_queue = [*self._audit_queue, event], []
        if len(events) == 1:
            await self._activity(
                Activity.RECORD_AUDIT_EVENT, event, None, timedelta(seconds=30), retry_policy=AUDIT_RETRY
            )
        else:
            await self._activity(
                Activity.RECORD_AUDIT_EVENTS,
                AuditBatch(events=events),
                None,
                timedelta(seconds=30),
                retry_policy=AUDIT_RETRY,
            )

    def _set_status(self, status: ProposalStatus, note: str = "") -> None:
        self.state.status = status
        self.state.timeline.append(TimelineEntry(at=workflow.now(), status=status, note=note))
        if self._search_attributes:
            workflow.upsert_search_attributes([SA_STATUS.value_set(status.value)])

    def _note(self, note: str) -> None:
        self.state.timeline.append(TimelineEntry(at=workflow.now(), status=self.state.status, note=note))

    def _headline(self) -> str:
        p = self.state.proposal
        service = self.state.service.canonical if self.state.service else p.target.service
        return gate.headline(
            p.action, service, p.target.environment, p.recommender, self.tier if self.state.risk else None
        )

    def _notify(self, kind: str, text: str, group: str | None = None) -> None:
        # Fire and forget: a failing notifier is retried and never blocks or changes a decision.
        self._notifications.append(
            workflow.start_activity(
                Activity.NOTIFY,
                Notification(
                    kind=kind,
                    proposal_id=self.state.proposal.proposal_id,
                    text=text,
                    status=self.state.status.value,
                    group=group,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
            )
        )

    def _current_decisions(self) -> list[DecisionRecord]:
        return gate.current(self.state.decisions, self.state.plan_hash)

    def _quorum_met(self) -> bool:
        return gate.quorum(self._current_decisions(), self.gov, self.tier, bool(self.state.freezes))[0]

    def _missing(self) -> str:
        return gate.quorum(self._current_decisions(), self.gov, self.tier, bool(self.state.freezes))[1]

    def _rejected(self) -> bool:
        return gate.rejected(self._current_decisions())

    def _active_pauses(self) -> list[Pause]:
        p = self.state.proposal
        service = self.state.service.canonical if self.state.service else p.target.service
        active = gate.active_pauses(self.w.pauses, p.action, p.recommender, service)
        self.state.pauses = active
        return active

    def _pause_note(self) -> str:
        return "; ".join(f"paused ({x.scope.describe()}) by {x.by}: {x.reason}" for x in self.w.pauses)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        parts = [f"{'.'.join(str(x) for x in e['loc']) or 'input'}: {e['msg']}" for e in errors[:5]]
        return "; ".join(parts) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

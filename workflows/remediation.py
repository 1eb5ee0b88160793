"""The remediation workflow: one durable workflow per proposal.

checks -> risk -> preview -> approval gate (Updates, quorum, signatures, freezes, pauses)
-> re-check -> execute -> verify -> rollback on failure.
Deterministic orchestration only: every side effect is an activity, every rule is in
interlock.gate, and the whole state is one object (`ApprovalWait`), carried whole by
continue-as-new and judged again by the fresh run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from interlock import gate
    from interlock.audit.events import AuditBatch, AuditEventIn, EventKind
    from interlock.contracts import Activity
    from interlock.governance import (
        AUTO_APPROVER,
        DEFAULT_HISTORY_EVENT_LIMIT,
        ApprovalWait,
        Assessment,
        Governance,
        GovernanceCheck,
        RemediationRun,
        plan_hash,
    )
    from interlock.models import (
        AttachDuplicate,
        CancelRequest,
        DecisionInput,
        DecisionKind,
        DecisionRecord,
        DecisionResult,
        Duplicate,
        EvidenceRecheck,
        EvidenceReport,
        Notification,
        Pause,
        PauseScope,
        PlaybookResult,
        PlaybookRun,
        PrecheckInput,
        PrecheckResult,
        ProposalState,
        ProposalStatus,
        RiskTier,
        Stage,
        TimelineEntry,
    )
    from interlock.policy import Mode
    from interlock.presentation import approval_details
    from interlock.risk import RiskInput, score_risk
    from interlock.search import SA_RISK_TIER, SA_STATUS
    from interlock.signing import decode_claims

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

PLAYBOOK_QUEUE_PATCH = "playbooks-on-own-task-queue"
# Audit events recorded back to back go to the store in one activity (one transaction).
AUDIT_BATCH_PATCH = "audit-events-batched"
# A continued run re-derives governance from the policy instead of adopting the carried one.
REDERIVE_PATCH = "continued-run-rederives-governance"
# A duplicate is attached only when its dedup key is the owner's.
DUPLICATE_KEY_PATCH = "duplicate-needs-owner-key"


def playbook_task_queue(task_queue: str) -> str:
    """Playbooks run on their own queue, so each worker can bound them to its cores."""
    return f"{task_queue}.playbooks"


def evidence_items(assessment: Assessment) -> list[dict[str, Any]]:
    items = assessment.evidence.items if assessment.evidence else []
    return [i.model_dump(mode="json") for i in items]


@workflow.defn(name="RemediationWorkflow")
class RemediationWorkflow:
    @workflow.init
    def __init__(self, raw: RawValue) -> None:
        # The input is untrusted (any namespace writer can start this workflow): decoded here,
        # so one the model refuses ends as rejected_by_checks instead of failing out of sight.
        self._input: RemediationRun | None = None
        self._refusal = ""
        try:
            self._input = workflow.payload_converter().from_payload(raw.payload, RemediationRun)
        except (ValidationError, ValueError, TypeError) as exc:
            self._refusal = _one_line(exc)
        self._w: ApprovalWait | None = None
        self._abort = False
        self._cancel: str | None = None
        self._notifications: list[workflow.ActivityHandle[None]] = []
        self._search_attributes = self._input.search_attributes if self._input else True
        self._audit_batching = False
        self._audit_queue: list[AuditEventIn] = []
        self._announced = False

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

    # --- The lifecycle -------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: RawValue) -> ProposalState:
        self._audit_batching = workflow.patched(AUDIT_BATCH_PATCH)
        info = workflow.info()
        if self._input is None:
            await self._refuse_input(f"input refused: {self._refusal}")
        inp = self._input
        assert inp is not None
        self._w = ApprovalWait(
            state=ProposalState(
                proposal=inp.proposal,
                workflow_id=info.workflow_id,
                status=ProposalStatus.SUBMITTED,
                submitted_at=inp.submitted_at,
            )
        )
        if inp.proposal.proposal_id != info.workflow_id:
            # Nothing is written under the body's id: it may name someone else's proposal.
            await self._refuse_input(
                f"workflow id {info.workflow_id!r} is not the proposal's id {inp.proposal.proposal_id!r}"
            )
        try:
            if inp.continued is not None and info.continued_run_id:
                return await self._continue_waiting(inp.continued)
            return await self._propose(inp)
        except asyncio.CancelledError:
            return await self._finish_cancelled()

    async def _propose(self, inp: RemediationRun) -> ProposalState:
        proposal = inp.proposal
        self._set_status(ProposalStatus.CHECKING)
        assessment = await self._activity(Activity.CHECK_PROPOSAL, proposal, Assessment, timedelta(minutes=2))
        self.w.assessment = assessment
        self.state.policy_version = assessment.policy_version
        self.state.evidence = assessment.evidence
        self.state.service = assessment.service
        # Written with the risk assessment (or the final event): nothing runs in between.
        await self._audit(
            EventKind.SUBMITTED,
            actor=proposal.recommender,
            data={"proposal": proposal.model_dump(mode="json"), "policy": assessment.policy_version},
            later=True,
        )
        if inp.continued is not None:
            # Carried-over state in a run Temporal did not continue: a forgery, never adopted.
            await self._audit(
                EventKind.SECURITY,
                data={"ok": False, "reasons": ["carried-over state ignored: this run was started directly"]},
                later=True,
            )
        await self._audit(
            EventKind.SECURITY if assessment.security_violation else EventKind.EVIDENCE_CHECKED,
            data={"ok": assessment.ok, "reasons": assessment.reasons, "items": evidence_items(assessment)},
            later=True,
        )
        if not assessment.ok or assessment.service is None or assessment.governance is None:
            prefix = ["security: outside the recommender's scope"] if assessment.security_violation else []
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, prefix + assessment.reasons)
        self.w.governance = assessment.governance
        self.w.history_event_limit = assessment.history_event_limit or DEFAULT_HISTORY_EVENT_LIMIT
        self.w.approval_timeout_seconds = assessment.approval_timeout_seconds or None
        self.state.freezes = list(self.gov.freezes)
        self.state.risk = score_risk(self._risk_input(assessment), self.gov.risk)
        if self._search_attributes:
            workflow.upsert_search_attributes([SA_RISK_TIER.value_set(self.tier.value)])
        above = gate.ceiling_refusal(proposal.recommender, self.tier, self.gov)
        if above:
            # Above its highest tier is a scope violation too: on record for an auditor.
            await self._audit(EventKind.SECURITY, data={"ok": False, "reasons": [above]}, later=True)
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, [above])

        await self._audit(EventKind.RISK_ASSESSED, data=self.state.risk.model_dump(mode="json"))
        if self._cancel is not None:
            return await self._finish_cancelled()
        if not await self._preview():
            error = self.state.preview.error if self.state.preview else ""
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, [f"preview failed: {error}"])
        assert self.state.preview is not None
        await self._audit(
            EventKind.PREVIEW,
            data={
                "plan_hash": self.state.plan_hash,
                "changed": [t.task for t in self.state.preview.changed_tasks],
            },
        )
        self.state.mode = self.gov.mode.value
        if self.gov.mode is Mode.SHADOW:
            # Assessed and recorded; nobody is asked and nothing runs.
            return await self._finish(
                ProposalStatus.SHADOWED, ["shadow mode: assessed and recorded, not run"]
            )
        if self.gov.mode is Mode.AUTO:
            self._maybe_auto_approve()
        self.w.escalate_at = workflow.now() + self.gov.rules[self.tier].escalate_after
        self.w.expire_at = workflow.now() + self._expire_after()
        return await self._gate_then_execute()

    def _risk_input(self, assessment: Assessment) -> RiskInput:
        if assessment.risk_input is not None:
            return assessment.risk_input
        proposal, evidence = self.state.proposal, assessment.evidence
        assert assessment.service is not None
        return RiskInput(  # histories recorded before the checks gathered the facts
            action=proposal.action,
            base_risk=assessment.base_risk,
            environment=proposal.target.environment,
            environment_risk=assessment.environment_risk,
            service=assessment.service.canonical,
            dependents=assessment.service.dependents,
            confidence=proposal.confidence,
            evidence_total=len(evidence.items) if evidence else 0,
            evidence_confirmed=evidence.confirmed if evidence else 0,
        )

    async def _gate_then_execute(self) -> ProposalState:
        while True:
            if self._cancel is not None:
                return await self._finish_cancelled()
            outcome = await self._await_decision()
            if outcome is not None:
                return outcome
            held = await self._recheck_before_execution()
            if held is None:
                break
            if held == "replan" and not await self._preview():
                return await self._finish(
                    ProposalStatus.REJECTED_BY_CHECKS,
                    ["plan changed after approval and the new preview failed"],
                )
        if self._cancel is not None:
            return await self._finish_cancelled()
        if not await self._evidence_still_holds():
            assert self.state.evidence_recheck is not None
            reasons = [f"condition cleared: {r}" for r in self.state.evidence_recheck.reasons]
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, reasons)
        return await self._execute()

    def _maybe_auto_approve(self) -> None:
        why = gate.auto_approval(
            self.tier, self.state.proposal.confidence, self.gov, bool(self.state.freezes)
        )
        if why is None:
            self.state.mode = "auto (declined: needs a person)"
            return
        self.state.decisions.append(
            DecisionRecord(
                decision=DecisionKind.APPROVE,
                approver=AUTO_APPROVER,
                reason=why,
                at=workflow.now(),
                human=False,
                plan_hash=self.state.plan_hash,
            )
        )

    async def _await_decision(self) -> ProposalState | None:
        """Wait for quorum or a rejection, escalating at T1 and expiring at T2."""
        if self._rejected():  # rejected while paused
            return await self._finish_rejected()
        if self._quorum_met():
            return None
        if not self._announced:
            self._set_status(ProposalStatus.AWAITING_APPROVAL)
            self.state.waiting_for = self._missing()
            self._notify("awaiting_approval", f"Approval needed: {self._headline()}")
        self._announced = False
        workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        escalate_at, expire_at = self.w.escalate_at, self.w.expire_at
        assert escalate_at is not None and expire_at is not None
        while True:
            deadline = expire_at if self.state.escalated else min(escalate_at, expire_at)
            try:
                await self._wait(
                    lambda: self._rejected() or self._quorum_met() or self._history_full(),
                    timeout=max(deadline - workflow.now(), timedelta(seconds=1)),
                )
                if self._cancel is not None:
                    return await self._finish_cancelled()
                if self._rejected() or self._quorum_met():
                    break
                # A long wait: hand the pending decisions to a fresh run before history grows
                # near Temporal's limits. Decisions in flight land first.
                await self._wait(workflow.all_handlers_finished)
                if self._cancel is not None:
                    return await self._finish_cancelled()
                if self._rejected() or self._quorum_met():
                    break
                await self._continue_as_new()
            except TimeoutError:
                if deadline >= expire_at:
                    # A timeout never approves.
                    return await self._finish(
                        ProposalStatus.EXPIRED, [f"no decision within {expire_at - self.state.submitted_at}"]
                    )
                self.state.escalated = True
                group = self.gov.rules[self.tier].escalation_group or self.gov.owner_group
                self._note(f"escalated to {group}: still needs {self._missing()}")
                self._notify("escalation", f"Escalated to {group}: {self._headline()}", group)
                await self._audit(EventKind.ESCALATED, data={"group": group, "missing": self._missing()})
        if self._rejected():
            return await self._finish_rejected()
        self.state.waiting_for = None
        return None

    async def _finish_rejected(self) -> ProposalState:
        last = next(d for d in self._current_decisions() if d.decision is DecisionKind.REJECT)
        return await self._finish(ProposalStatus.REJECTED, [f"rejected by {last.approver}: {last.reason}"])

    async def _recheck_before_execution(self) -> str | None:
        """None when execution may start; otherwise why it is held (and wait it out)."""
        assert self.state.service is not None and self.state.preview is not None
        proposal = self.state.proposal
        pre = await self._activity(
            Activity.PRECHECK_EXECUTION,
            PrecheckInput(
                proposal_id=proposal.proposal_id,
                action=proposal.action,
                environment=proposal.target.environment,
                service=self.state.service.canonical,
                recommender=proposal.recommender,
                playbooks_digest=self.state.preview.playbooks_digest,
            ),
            PrecheckResult,
            timedelta(minutes=1),
        )
        if pre.playbooks_digest != self.state.preview.playbooks_digest:
            # Decisions stay on record, bound to the old plan hash; after the new preview they
            # no longer count (gate.current compares plan hashes).
            self._note("the playbooks changed after approval: new preview needed")
            return "replan"
        if pre.freezes and not self.state.freezes:
            self.state.freezes = pre.freezes
            if not self._quorum_met():
                return "frozen"
        self.w.pauses += [p for p in pre.pauses if p not in self.w.pauses]
        if self._active_pauses():
            self._set_status(ProposalStatus.PAUSED, self._pause_note())
            workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
            held_by = [p.model_dump(mode="json") for p in self._active_pauses()]
            await self._audit(EventKind.PAUSED, data={"pauses": held_by})
            # Held, but still open to a rejection (the Update validator lets one through).
            await self._wait(lambda: not self._active_pauses() or self._rejected())
            if not self._rejected() and self._cancel is None:
                await self._audit(EventKind.RESUMED, data={"pauses": held_by})
            return "resumed"
        return None

    async def _execute(self) -> ProposalState:
        assert self.state.preview is not None
        for d in self.state.decisions:
            if d.plan_hash == self.state.plan_hash:
                await self._audit_decision(d, later=True)
        # Fail closed: the start (and what led to it) is on record before anything touches a system.
        await self._audit(EventKind.EXECUTION_STARTED, data={"plan_hash": self.state.plan_hash})
        self._set_status(ProposalStatus.EXECUTING)
        workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        execution = self.state.execution = await self._playbook(
            Stage.EXECUTE, expected_digest=self.state.preview.playbooks_digest, abortable=True
        )
        if execution.status == "already_executed":
            # A reset run under an old approval: the change ran before, and runs once only.
            return await self._finish(
                ProposalStatus.NEEDS_MANUAL_INTERVENTION, [f"not run: {execution.error}"]
            )
        await self._audit(
            EventKind.EXECUTION_FINISHED,
            data={"ok": execution.ok, "tasks": [t.model_dump(mode="json") for t in execution.tasks]},
        )
        if execution.ok:
            self._set_status(ProposalStatus.VERIFYING)
            verification = self.state.verification = await self._playbook(Stage.VERIFY, execution.facts)
            if verification.ok:
                unresolved = await self._evidence_not_cleared()
                if unresolved:
                    return await self._finish(ProposalStatus.COMPLETED_UNRESOLVED, unresolved)
                return await self._finish(ProposalStatus.COMPLETED, [])
            reasons = [f"verification failed: {verification.error}"]
        else:
            reasons = [f"execution failed: {execution.error}"]

        self._set_status(ProposalStatus.ROLLING_BACK)
        rollback = self.state.rollback = await self._playbook(Stage.ROLLBACK, execution.facts)
        if rollback.ok:
            check = self.state.rollback_verification = await self._playbook(
                Stage.VERIFY_ROLLBACK, execution.facts
            )
            if check.ok:
                return await self._finish(ProposalStatus.ROLLED_BACK, [*reasons, "rollback ran and verified"])
            reasons.append(f"rollback verification failed: {check.error}")
        else:
            reasons.append(f"rollback failed: {rollback.error}")
        # Never a quiet success: a person has to look at this system now.
        return await self._finish(ProposalStatus.NEEDS_MANUAL_INTERVENTION, reasons)

    async def _evidence_still_holds(self) -> bool:
        """Re-check before execution: evidence older than the shortest max age of its sources
        is asked again; if it no longer holds, nothing runs."""
        evidence = self.state.evidence
        max_age = self.w.assessment.evidence_max_age_seconds if self.w.assessment else None
        if evidence is None or max_age is None:
            return True
        if workflow.now() - evidence.checked_at <= timedelta(seconds=max_age):
            return True
        report = self.state.evidence_recheck = await self._recheck_evidence(0.0)
        await self._audit(
            EventKind.EVIDENCE_CHECKED,
            data={
                "stage": "before_execution",
                "ok": report.ok,
                "reasons": report.reasons,
                "items": [i.model_dump(mode="json") for i in report.items],
            },
            later=True,
        )
        return report.ok

    async def _evidence_not_cleared(self) -> list[str]:
        """After a successful run: the evidence that justified it must clear within the
        action's settle time. Returns why it did not (empty when it did)."""
        settle = self.w.assessment.settle_seconds if self.w.assessment else None
        if settle is None or self.state.evidence is None:
            return []
        report = self.state.evidence_after = await self._recheck_evidence(settle)
        still = [
            f"not resolved within {settle:g}s: {i.source} {i.ref}: "
            + (i.reason if i.fetched else f"could not re-read: {i.reason}")
            for i in report.items
            if i.supports or not i.fetched
        ]
        await self._audit(
            EventKind.VERIFICATION,
            data={
                "stage": "evidence_cleared",
                "ok": not still,
                "reasons": still,
                "items": [i.model_dump(mode="json") for i in report.items],
            },
            later=True,
        )
        return still

    async def _recheck_evidence(self, settle_seconds: float) -> EvidenceReport:
        assert self.state.service is not None and self.state.evidence is not None
        proposal = self.state.proposal
        confirmed = {(i.source, i.ref) for i in self.state.evidence.items if i.ok}
        return await self._activity(
            Activity.RECHECK_EVIDENCE,
            EvidenceRecheck(
                proposal=proposal,
                service=self.state.service.canonical,
                items=[i for i in proposal.evidence if (i.source, i.ref) in confirmed],
                settle_seconds=settle_seconds,
            ),
            EvidenceReport,
            timedelta(seconds=settle_seconds + 120),
            heartbeat_timeout=timedelta(seconds=60),
        )

    async def _preview(self) -> bool:
        self._set_status(ProposalStatus.PREVIEWING)
        preview = self.state.preview = await self._playbook(Stage.PREVIEW)
        if not preview.ok:
            return False
        proposal = self.state.proposal
        assert self.state.service is not None
        self.state.plan_hash = plan_hash(
            proposal.action,
            self.state.service.canonical,
            proposal.target.environment,
            dict(proposal.parameters),
            preview,
        )
        return True

    async def _playbook(
        self,
        stage: Stage,
        facts: dict[str, str] | None = None,
        expected_digest: str | None = None,
        abortable: bool = False,
    ) -> PlaybookResult:
        proposal = self.state.proposal
        assert self.state.service is not None
        run = PlaybookRun(
            proposal_id=proposal.proposal_id,
            action=proposal.action,
            stage=stage,
            service=self.state.service.canonical,
            parameters=dict(proposal.parameters),
            facts=facts or {},
            expected_digest=expected_digest,
        )
        started = workflow.now()
        handle = workflow.start_activity(
            Activity.RUN_PLAYBOOK,
            run,
            # Versioned: proposals started before the playbook queue existed keep the main queue.
            task_queue=(
                playbook_task_queue(workflow.info().task_queue)
                if workflow.patched(PLAYBOOK_QUEUE_PATCH)
                else None
            ),
            result_type=PlaybookResult,
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=timedelta(seconds=15),
            retry_policy=PLAYBOOK_RETRY,
        )
        try:
            if abortable:
                # Ends early on a cancellation request too, which never stops a change in flight.
                await self._wait(lambda: handle.done() or self._abort)
                if self._abort and not handle.done():
                    handle.cancel()
            return await self._shielded(handle)
        except (ActivityError, CancelledError) as exc:
            cause = getattr(exc, "cause", None)
            message = getattr(cause, "message", None) or str(exc)
            status = "canceled" if self._abort else "error"
            if isinstance(cause, ApplicationError) and cause.type == "AlreadyExecuted":
                status = "already_executed"
            elif self._abort:
                message = "cancelled by pause --abort-running"
            return PlaybookResult(
                stage=stage,
                playbook="",
                status=status,
                rc=-1,
                ok=False,
                started_at=started,
                finished_at=workflow.now(),
                error=message,
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
        await self._flush_notifications()
        # Let in-flight Update handlers return their answer before the workflow closes.
        await self._shielded(workflow.wait_condition(workflow.all_handlers_finished))
        return self.state

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

    # --- Continue-as-new during long approval waits -----------------------------------------

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.w.history_event_limit
        )

    async def _continue_as_new(self) -> NoReturn:
        await self._flush_notifications()
        self._note(
            f"history at {workflow.info().get_current_history_length()} events: "
            f"continued as run {self.w.runs + 1}, decisions carried"
        )
        self.w.runs += 1
        workflow.continue_as_new(
            RemediationRun(
                proposal=self.state.proposal,
                submitted_at=self.state.submitted_at,
                search_attributes=self._search_attributes,
                continued=self.w,
            )
        )

    async def _continue_waiting(self, carried: ApprovalWait) -> ProposalState:
        """The same proposal in a fresh run: the governance is the policy's, as it is now, and every
        carried decision is judged again (signature, binding, plan, roster); then keep waiting."""
        fresh = self.state
        self._w = carried
        self.state.workflow_id = fresh.workflow_id
        self.state.proposal = fresh.proposal
        self._announced = True  # the approvers were notified by the first run
        if workflow.patched(REDERIVE_PATCH):
            check = await self._activity(
                Activity.GOVERNANCE_FOR, self.state.proposal, GovernanceCheck, timedelta(minutes=1)
            )
            if not check.ok or check.governance is None or self.state.risk is None:
                await self._audit(
                    EventKind.SECURITY, data={"ok": False, "reasons": check.reasons}, later=True
                )
                return await self._finish(
                    ProposalStatus.REJECTED_BY_CHECKS, check.reasons or ["no governance"]
                )
            self.w.governance = check.governance
            if self.w.assessment is not None and self.w.assessment.risk_input is not None:
                self.state.risk = score_risk(self.w.assessment.risk_input, self.gov.risk)
            kept, dropped, nonces = gate.recheck_carried(
                self.state.decisions, self._view(), self.state.proposal.confidence
            )
            self.state.decisions = kept
            self.w.nonces = sorted(set(self.w.nonces) | nonces)
            if dropped:
                for why in dropped:
                    self._note(why)
                await self._audit(EventKind.SECURITY, data={"ok": False, "reasons": dropped})
        return await self._gate_then_execute()

    # --- Small helpers ---------------------------------------------------------------------

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
        return await self._shielded(handle)  # type: ignore[return-value]

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
            p.action, service, p.target.environment, p.recommender, self.state.risk and self.tier
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

    def _expire_after(self) -> timedelta:
        seconds = self.w.approval_timeout_seconds
        return timedelta(seconds=seconds) if seconds else self.gov.rules[self.tier].expire_after

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
        active = [x for x in self.w.pauses if x.scope.covers(p.action, p.recommender, service)]
        self.state.pauses = active
        return active

    def _pause_note(self) -> str:
        return "; ".join(f"paused ({x.scope.describe()}) by {x.by}: {x.reason}" for x in self.w.pauses)

    # --- Queries, Signals and Updates --------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> ProposalState:
        if self._w is None:
            raise ApplicationError(
                f"{ProposalStatus.REJECTED_BY_CHECKS.value}: input refused: {self._refusal}"
            )
        return self.state

    @workflow.signal(name="pause")
    def pause(self, pause: Pause) -> None:
        if self._w is None:
            return
        if pause not in self.w.pauses:
            self.w.pauses.append(pause)
        if self._active_pauses() and pause.abort_running and self.state.status is ProposalStatus.EXECUTING:
            self._abort = True

    @workflow.signal(name="add_duplicate")
    async def add_duplicate(self, inp: AttachDuplicate) -> None:
        """Another proposal for the same problem: check it and its evidence, count it, ask nobody.

        Anyone with namespace access can send this signal: a proposal that is not for the owner's
        problem (another dedup key) or fails its checks is refused and recorded as a security event."""
        await workflow.wait_condition(lambda: self._w is not None)
        dup = inp.proposal
        if dup.proposal_id == self.state.proposal.proposal_id or dup.proposal_id in self.w.duplicate_ids:
            return  # a retried submission counts once
        self.w.duplicate_ids.append(dup.proposal_id)
        record = Duplicate(
            proposal_id=dup.proposal_id,
            recommender=dup.recommender,
            model_version=dup.model_version,
            confidence=dup.confidence,
            received_at=inp.received_at,
        )
        assessment = await self._activity(Activity.CHECK_PROPOSAL, dup, Assessment, timedelta(minutes=2))
        # The owner's own checks may still be running: its key comes with their answer.
        # (Awaited only when needed: an extra wait would reorder commands in stored histories.)
        if self.w.assessment is None and not self.state.status.is_final:
            await workflow.wait_condition(lambda: self.w.assessment is not None or self.state.status.is_final)
        owner_key = self.w.assessment.dedup_key if self.w.assessment else None
        if workflow.patched(DUPLICATE_KEY_PATCH) and (
            assessment.security_violation or owner_key is None or assessment.dedup_key != owner_key
        ):
            why = (
                "security violation" if assessment.security_violation else "not the same problem (dedup key)"
            )
            await self._audit(
                EventKind.SECURITY,
                actor=dup.recommender,
                data={
                    "ok": False,
                    "duplicate": dup.proposal_id,
                    "reasons": [f"duplicate refused: {why}", *assessment.reasons],
                },
            )
            return
        self.state.duplicate_count += 1
        if len(self.state.duplicates) < MAX_RECORDED_DUPLICATES:
            self.state.duplicates.append(record)
        record.evidence, record.ok, record.reasons = assessment.evidence, assessment.ok, assessment.reasons
        await self._audit(
            EventKind.DUPLICATE,
            actor=dup.recommender,
            data={
                "duplicate": dup.proposal_id,
                "ok": assessment.ok,
                "reasons": assessment.reasons,
                "items": evidence_items(assessment),
            },
        )
        if self.state.status is ProposalStatus.AWAITING_APPROVAL:
            workflow.set_current_details(approval_details(self.state, gov=self.w.governance))

    @workflow.signal(name="resume")
    def resume(self, scope: PauseScope) -> None:
        if self._w is None:
            return
        self.w.pauses = [p for p in self.w.pauses if p.scope != scope]
        self._active_pauses()

    @workflow.update(name="approve")
    async def approve(self, inp: DecisionInput) -> DecisionResult:
        return await self._decide(DecisionKind.APPROVE, inp)

    @approve.validator
    def _validate_approve(self, inp: DecisionInput) -> None:
        self._validate(DecisionKind.APPROVE, inp)

    @workflow.update(name="reject")
    async def reject(self, inp: DecisionInput) -> DecisionResult:
        return await self._decide(DecisionKind.REJECT, inp)

    @reject.validator
    def _validate_reject(self, inp: DecisionInput) -> None:
        self._validate(DecisionKind.REJECT, inp)

    def _validate(self, kind: DecisionKind, inp: DecisionInput) -> None:
        # Validators refuse before anything is written to history.
        state = self._w.state if self._w is not None else None
        paused_reject = (
            kind is DecisionKind.REJECT and state is not None and state.status is ProposalStatus.PAUSED
        )
        if state is None or (state.status is not ProposalStatus.AWAITING_APPROVAL and not paused_reject):
            current = state.status.value if state else "starting"
            raise ValueError(f"proposal is {current}, not awaiting_approval")
        if self._cancel is not None:
            raise ValueError("proposal is being cancelled")
        gate.judge(
            kind, inp, self._view(), self._current_decisions(), frozenset(self.w.nonces), workflow.now()
        )

    async def _decide(self, kind: DecisionKind, inp: DecisionInput) -> DecisionResult:
        approver, reason, signed = inp.approver, inp.reason, False
        if inp.token:
            claims = decode_claims(inp.token)
            approver, reason, signed = claims.approver, claims.reason, True
            self.w.nonces.append(claims.nonce)
        self.state.decisions.append(
            DecisionRecord(
                decision=kind,
                approver=approver,
                reason=reason.strip(),
                at=workflow.now(),
                groups=self.gov.groups_of(approver),
                signed=signed,
                plan_hash=self.state.plan_hash,
                token=inp.token if signed else None,
            )
        )
        if kind is DecisionKind.REJECT or self._quorum_met():
            # Answer once the workflow has acted on the decision, so the caller sees its effect.
            await workflow.wait_condition(
                lambda: (
                    self.state.status.is_final
                    if kind is DecisionKind.REJECT
                    else self.state.status is not ProposalStatus.AWAITING_APPROVAL
                )
            )
        else:
            self.state.waiting_for = self._missing()
        return DecisionResult(
            proposal_id=self.state.proposal.proposal_id,
            decision=kind,
            approver=approver,
            status=self.state.status,
        )


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        parts = [f"{'.'.join(str(x) for x in e['loc']) or 'input'}: {e['msg']}" for e in errors[:5]]
        return "; ".join(parts) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

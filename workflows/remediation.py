"""The remediation workflow: one durable workflow per proposal.

checks -> risk -> preview -> approval gate (Updates, quorum, signatures, freezes, pauses)
-> re-check -> execute -> verify -> rollback on failure.
Deterministic orchestration only: every side effect is an activity.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from interlock.audit.events import AuditBatch, AuditEventIn, EventKind
    from interlock.governance import (
        AUTO_APPROVER,
        ApprovalWait,
        Assessment,
        Governance,
        RemediationRun,
        plan_hash,
        quorum,
    )
    from interlock.models import (
        AttachDuplicate,
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
    from interlock.signing import TokenRefused, decode_claims, verify

CHECKS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
PLAYBOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["PlanChanged"],
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


# Continue-as-new while awaiting approval past this many events (Temporal warns at 10,240).
DEFAULT_HISTORY_EVENT_LIMIT = 5000
PLAYBOOK_QUEUE_PATCH = "playbooks-on-own-task-queue"
# Audit events recorded back to back go to the store in one activity (one transaction).
AUDIT_BATCH_PATCH = "audit-events-batched"


def playbook_task_queue(task_queue: str) -> str:
    """Playbooks run on their own queue, so each worker can bound them to its cores."""
    return f"{task_queue}.playbooks"


def evidence_items(assessment: Assessment) -> list:
    return list(assessment.evidence.items) if assessment.evidence else []


@workflow.defn(name="RemediationWorkflow")
class RemediationWorkflow:
    def __init__(self) -> None:
        self._state: ProposalState | None = None
        self._gov: Governance | None = None
        self._nonces: set[str] = set()
        self._pauses: list[Pause] = []
        self._abort = False
        self._approval_timeout: timedelta | None = None
        self._notifications: list[workflow.ActivityHandle[None]] = []
        self._search_attributes = True
        self._audit_seq = 0
        self._audit_batching = False
        self._audit_queue: list[AuditEventIn] = []
        self._duplicate_ids: set[str] = set()
        self._assessment = Assessment(ok=False, reasons=[], policy_version="")
        self._history_limit = DEFAULT_HISTORY_EVENT_LIMIT
        self._runs = 1
        self._announced = False

    @property
    def state(self) -> ProposalState:
        assert self._state is not None
        return self._state

    @property
    def gov(self) -> Governance:
        assert self._gov is not None
        return self._gov

    @property
    def tier(self) -> RiskTier:
        assert self.state.risk is not None
        return self.state.risk.tier

    # --- The lifecycle -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RemediationRun) -> ProposalState:
        proposal = inp.proposal
        self._search_attributes = inp.search_attributes
        self._audit_batching = workflow.patched(AUDIT_BATCH_PATCH)
        if inp.continued is not None:
            return await self._continue_waiting(inp.continued)
        self._state = ProposalState(
            proposal=proposal,
            workflow_id=workflow.info().workflow_id,
            status=ProposalStatus.SUBMITTED,
            submitted_at=inp.submitted_at,
        )
        self._set_status(ProposalStatus.CHECKING)
        assessment = await workflow.execute_activity(
            "check_proposal",
            proposal,
            result_type=Assessment,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=CHECKS_RETRY,
        )
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
        await self._audit(
            EventKind.SECURITY if assessment.security_violation else EventKind.EVIDENCE_CHECKED,
            data={
                "ok": assessment.ok,
                "reasons": assessment.reasons,
                "items": [i.model_dump(mode="json") for i in evidence_items(assessment)],
            },
            later=True,
        )
        if not assessment.ok or assessment.service is None or assessment.governance is None:
            prefix = ["security: outside the recommender's scope"] if assessment.security_violation else []
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, prefix + assessment.reasons)
        self._gov = assessment.governance
        self._history_limit = assessment.history_event_limit or DEFAULT_HISTORY_EVENT_LIMIT
        if assessment.approval_timeout_seconds:
            self._approval_timeout = timedelta(seconds=assessment.approval_timeout_seconds)
        self.state.freezes = list(self.gov.freezes)

        evidence = assessment.evidence
        self._assessment = assessment
        self.state.risk = score_risk(
            assessment.risk_input
            or RiskInput(
                action=proposal.action,
                base_risk=assessment.base_risk,
                environment=proposal.target.environment,
                environment_risk=assessment.environment_risk,
                service=assessment.service.canonical,
                dependents=assessment.service.dependents,
                confidence=proposal.confidence,
                evidence_total=len(evidence.items) if evidence else 0,
                evidence_confirmed=sum(i.ok for i in evidence.items) if evidence else 0,
            ),
            self.gov.risk,
        )
        if self._search_attributes:
            workflow.upsert_search_attributes([SA_RISK_TIER.value_set(self.tier.value)])
        ceiling = self.gov.recommender_max_tier
        if ceiling is not None and self.tier.rank > ceiling.rank:
            reasons = [
                f"security: {proposal.recommender} may propose up to {ceiling.value} risk; "
                f"this is {self.tier.value}"
            ]
            # Above its highest tier is a scope violation too: on record for an auditor.
            await self._audit(EventKind.SECURITY, data={"ok": False, "reasons": reasons}, later=True)
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, reasons)

        await self._audit(EventKind.RISK_ASSESSED, data=self.state.risk.model_dump(mode="json"))
        if not await self._preview():
            return await self._finish(
                ProposalStatus.REJECTED_BY_CHECKS,
                [f"preview failed: {self.state.preview.error if self.state.preview else ''}"],
            )
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

        deadline_escalate = workflow.now() + self._rule_escalate_after()
        deadline_expire = workflow.now() + self._expire_after()
        return await self._gate_then_execute(deadline_escalate, deadline_expire)

    async def _gate_then_execute(
        self, deadline_escalate: datetime, deadline_expire: datetime
    ) -> ProposalState:
        while True:
            outcome = await self._await_decision(deadline_escalate, deadline_expire)
            if outcome is not None:
                return outcome
            held = await self._recheck_before_execution()
            if held is None:
                break
            if held == "replan":
                if not await self._preview():
                    return await self._finish(
                        ProposalStatus.REJECTED_BY_CHECKS,
                        ["plan changed after approval and the new preview failed"],
                    )
        if not await self._evidence_still_holds():
            assert self.state.evidence_recheck is not None
            return await self._finish(
                ProposalStatus.REJECTED_BY_CHECKS,
                [f"condition cleared: {r}" for r in self.state.evidence_recheck.reasons],
            )
        return await self._execute()

    def _maybe_auto_approve(self) -> None:
        proposal = self.state.proposal
        gov = self.gov
        if (
            self.tier.rank <= gov.auto_max_tier.rank
            and self.tier not in (RiskTier.HIGH, RiskTier.CRITICAL)
            and proposal.confidence >= gov.auto_min_confidence
            and not self.state.freezes
        ):
            self.state.decisions.append(
                DecisionRecord(
                    decision=DecisionKind.APPROVE,
                    approver=AUTO_APPROVER,
                    reason=(
                        f"auto mode: {self.tier.value} risk at or below {gov.auto_max_tier.value}, "
                        f"confidence {proposal.confidence:.2f} >= {gov.auto_min_confidence:.2f}"
                    ),
                    at=workflow.now(),
                    human=False,
                    plan_hash=self.state.plan_hash,
                )
            )
        else:
            self.state.mode = "auto (declined: needs a person)"

    async def _await_decision(
        self, deadline_escalate: datetime, deadline_expire: datetime
    ) -> ProposalState | None:
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
        workflow.set_current_details(approval_details(self.state))
        while True:
            now = workflow.now()
            deadline = deadline_expire if self.state.escalated else min(deadline_escalate, deadline_expire)
            try:
                await workflow.wait_condition(
                    lambda: self._rejected() or self._quorum_met() or self._history_full(),
                    timeout=max(deadline - now, timedelta(seconds=1)),
                )
                if self._rejected() or self._quorum_met():
                    break
                # A long wait: hand the pending decisions to a fresh run before history grows
                # near Temporal's limits. Decisions in flight land first.
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._rejected() or self._quorum_met():
                    break
                await self._continue_as_new(deadline_escalate, deadline_expire)
            except TimeoutError:
                if deadline >= deadline_expire:
                    # A timeout never approves.
                    return await self._finish(
                        ProposalStatus.EXPIRED,
                        [f"no decision within {deadline_expire - self.state.submitted_at}"],
                    )
                self.state.escalated = True
                group = self.gov.rules[self.tier].escalation_group or self.gov.owner_group
                self.state.timeline.append(
                    TimelineEntry(
                        at=workflow.now(),
                        status=self.state.status,
                        note=f"escalated to {group}: still needs {self._missing()}",
                    )
                )
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
        pre = await workflow.execute_activity(
            "precheck_execution",
            PrecheckInput(
                proposal_id=self.state.proposal.proposal_id,
                action=self.state.proposal.action,
                environment=self.state.proposal.target.environment,
                service=self.state.service.canonical,
                recommender=self.state.proposal.recommender,
                playbooks_digest=self.state.preview.playbooks_digest,
            ),
            result_type=PrecheckResult,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=CHECKS_RETRY,
        )
        if pre.playbooks_digest != self.state.preview.playbooks_digest:
            self._supersede_decisions("the playbooks changed after approval: new preview needed")
            return "replan"
        if pre.freezes and not self.state.freezes:
            self.state.freezes = pre.freezes
            if not self._quorum_met():
                return "frozen"
        for pause in pre.pauses:
            if pause not in self._pauses:
                self._pauses.append(pause)
        if self._active_pauses():
            self._set_status(ProposalStatus.PAUSED, self._pause_note())
            workflow.set_current_details(approval_details(self.state))
            held_by = [p.model_dump(mode="json") for p in self._active_pauses()]
            await self._audit(EventKind.PAUSED, data={"pauses": held_by})
            # Held, but still open to a rejection (the Update validator lets one through).
            await workflow.wait_condition(lambda: not self._active_pauses() or self._rejected())
            if not self._rejected():
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
        workflow.set_current_details(approval_details(self.state))
        execution = self.state.execution = await self._playbook(
            Stage.EXECUTE, expected_digest=self.state.preview.playbooks_digest, abortable=True
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
        evidence, max_age = self.state.evidence, self._assessment.evidence_max_age_seconds
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
        settle = self._assessment.settle_seconds
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
        return await workflow.execute_activity(
            "recheck_evidence",
            EvidenceRecheck(
                proposal=proposal,
                service=self.state.service.canonical,
                items=[i for i in proposal.evidence if (i.source, i.ref) in confirmed],
                settle_seconds=settle_seconds,
            ),
            result_type=EvidenceReport,
            start_to_close_timeout=timedelta(seconds=settle_seconds + 120),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=CHECKS_RETRY,
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
            "run_playbook",
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
                await workflow.wait_condition(lambda: handle.done() or self._abort)
                if not handle.done():
                    handle.cancel()
            return await handle
        except (ActivityError, CancelledError) as exc:
            cause = getattr(exc, "cause", None)
            message = getattr(cause, "message", None) or str(exc)
            if self._abort:
                message = "cancelled by pause --abort-running"
            return PlaybookResult(
                stage=stage,
                playbook="",
                status="canceled" if self._abort else "error",
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
        workflow.set_current_details(approval_details(self.state))
        self._notify("outcome", f"{status.value}: {self._headline()}")
        for note in self._notifications:
            try:
                await note
            except ActivityError:
                workflow.logger.warning("a notification could not be delivered")
        # Let in-flight Update handlers return their answer before the workflow closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    # --- Continue-as-new during long approval waits -----------------------------------------

    def _history_full(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._history_limit

    async def _continue_as_new(self, deadline_escalate: datetime, deadline_expire: datetime) -> NoReturn:
        for note in self._notifications:
            try:
                await note
            except ActivityError:
                workflow.logger.warning("a notification could not be delivered")
        self.state.timeline.append(
            TimelineEntry(
                at=workflow.now(),
                status=self.state.status,
                note=f"history at {workflow.info().get_current_history_length()} events: "
                f"continued as run {self._runs + 1}, decisions carried",
            )
        )
        workflow.continue_as_new(
            RemediationRun(
                proposal=self.state.proposal,
                submitted_at=self.state.submitted_at,
                search_attributes=self._search_attributes,
                continued=ApprovalWait(
                    state=self.state,
                    governance=self.gov,
                    nonces=sorted(self._nonces),
                    pauses=self._pauses,
                    approval_timeout_seconds=(
                        self._approval_timeout.total_seconds() if self._approval_timeout else None
                    ),
                    escalate_at=deadline_escalate,
                    expire_at=deadline_expire,
                    audit_seq=self._audit_seq,
                    history_event_limit=self._history_limit,
                    runs=self._runs + 1,
                    assessment=self._assessment,
                    duplicate_ids=sorted(self._duplicate_ids),
                ),
            )
        )

    async def _continue_waiting(self, carried: ApprovalWait) -> ProposalState:
        """The same proposal in a fresh run: restore the gate and keep waiting, silently."""
        self._state = carried.state
        self._gov = carried.governance
        self._nonces = set(carried.nonces)
        self._pauses = list(carried.pauses)
        if carried.approval_timeout_seconds:
            self._approval_timeout = timedelta(seconds=carried.approval_timeout_seconds)
        self._audit_seq = carried.audit_seq
        self._history_limit = carried.history_event_limit
        self._runs = carried.runs
        if carried.assessment is not None:
            self._assessment = carried.assessment
        self._duplicate_ids = set(carried.duplicate_ids)
        self._announced = True  # the approvers were notified by the first run
        return await self._gate_then_execute(carried.escalate_at, carried.expire_at)

    # --- Small helpers ---------------------------------------------------------------------

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
        self, kind: EventKind, actor: str | None = None, data: dict | None = None, later: bool = False
    ) -> None:
        """One append-only audit event, with an id that is the same on every retry.

        `later`: keep it and write it with the next event, in one activity and one transaction.
        Only for events followed by workflow code that touches nothing before that next write:
        failing closed means no activity with an effect runs before what led to it is stored.
        """
        p = self.state.proposal
        self._audit_seq += 1
        event = AuditEventIn(
            event_id=f"{p.proposal_id}/{workflow.info().run_id}/{self._audit_seq}/{kind.value}",
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
            await workflow.execute_activity(
                "record_audit_event",
                event,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=AUDIT_RETRY,
            )
        else:
            await workflow.execute_activity(
                "record_audit_events",
                AuditBatch(events=events),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=AUDIT_RETRY,
            )

    def _set_status(self, status: ProposalStatus, note: str = "") -> None:
        self.state.status = status
        self.state.timeline.append(TimelineEntry(at=workflow.now(), status=status, note=note))
        if self._search_attributes:
            workflow.upsert_search_attributes([SA_STATUS.value_set(status.value)])

    def _headline(self) -> str:
        p = self.state.proposal
        service = self.state.service.canonical if self.state.service else p.target.service
        tier = f", {self.tier.value} risk" if self.state.risk else ""
        return f"{p.action} on {service} ({p.target.environment}{tier}) from {p.recommender}"

    def _notify(self, kind: str, text: str, group: str | None = None) -> None:
        # Fire and forget: a failing notifier is retried and never blocks or changes a decision.
        self._notifications.append(
            workflow.start_activity(
                "notify",
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

    def _rule_escalate_after(self) -> timedelta:
        return self.gov.rules[self.tier].escalate_after

    def _expire_after(self) -> timedelta:
        return self._approval_timeout or self.gov.rules[self.tier].expire_after

    def _current_decisions(self) -> list[DecisionRecord]:
        return [d for d in self.state.decisions if d.plan_hash in (None, self.state.plan_hash)]

    def _quorum_met(self) -> bool:
        return quorum(self._current_decisions(), self.gov, self.tier, bool(self.state.freezes))[0]

    def _missing(self) -> str:
        return quorum(self._current_decisions(), self.gov, self.tier, bool(self.state.freezes))[1]

    def _rejected(self) -> bool:
        return any(d.decision is DecisionKind.REJECT for d in self._current_decisions())

    def _supersede_decisions(self, why: str) -> None:
        self.state.timeline.append(TimelineEntry(at=workflow.now(), status=self.state.status, note=why))
        # Decisions stay on record, bound to the old plan hash; after the new preview they
        # no longer count (_current_decisions compares plan hashes).

    def _active_pauses(self) -> list[Pause]:
        p = self.state.proposal
        service = self.state.service.canonical if self.state.service else p.target.service
        active = [x for x in self._pauses if x.scope.covers(p.action, p.recommender, service)]
        self.state.pauses = active
        return active

    def _pause_note(self) -> str:
        return "; ".join(f"paused ({x.scope.describe()}) by {x.by}: {x.reason}" for x in self._pauses)

    # --- Queries, Signals and Updates --------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> ProposalState:
        return self.state

    @workflow.signal(name="pause")
    def pause(self, pause: Pause) -> None:
        if pause not in self._pauses:
            self._pauses.append(pause)
        if self._state is not None and self._active_pauses():
            if pause.abort_running and self.state.status is ProposalStatus.EXECUTING:
                self._abort = True

    @workflow.signal(name="add_duplicate")
    async def add_duplicate(self, inp: AttachDuplicate) -> None:
        """Another proposal for the same problem: check its evidence, count it, ask nobody."""
        await workflow.wait_condition(lambda: self._state is not None)
        dup = inp.proposal
        if dup.proposal_id == self.state.proposal.proposal_id or dup.proposal_id in self._duplicate_ids:
            return  # a retried submission counts once
        self._duplicate_ids.add(dup.proposal_id)
        self.state.duplicate_count += 1
        record = Duplicate(
            proposal_id=dup.proposal_id,
            recommender=dup.recommender,
            model_version=dup.model_version,
            confidence=dup.confidence,
            received_at=inp.received_at,
        )
        if len(self.state.duplicates) < MAX_RECORDED_DUPLICATES:
            self.state.duplicates.append(record)
        assessment = await workflow.execute_activity(
            "check_proposal",
            dup,
            result_type=Assessment,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=CHECKS_RETRY,
        )
        record.evidence, record.ok, record.reasons = assessment.evidence, assessment.ok, assessment.reasons
        await self._audit(
            EventKind.DUPLICATE,
            actor=dup.recommender,
            data={
                "duplicate": dup.proposal_id,
                "ok": assessment.ok,
                "reasons": assessment.reasons,
                "items": [i.model_dump(mode="json") for i in evidence_items(assessment)],
            },
        )
        if self.state.status is ProposalStatus.AWAITING_APPROVAL:
            workflow.set_current_details(approval_details(self.state))

    @workflow.signal(name="resume")
    def resume(self, scope: PauseScope) -> None:
        self._pauses = [p for p in self._pauses if p.scope != scope]
        if self._state is not None:
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
        state = self._state
        paused_reject = (
            kind is DecisionKind.REJECT and state is not None and (state.status is ProposalStatus.PAUSED)
        )
        if state is None or (state.status is not ProposalStatus.AWAITING_APPROVAL and not paused_reject):
            current = state.status.value if state else "starting"
            raise ValueError(f"proposal is {current}, not awaiting_approval")
        gov = self.gov
        approver, reason, signed = inp.approver, inp.reason, False
        if inp.token:
            try:
                claims = verify(
                    inp.token,
                    public_keys={n: a.public_key for n, a in gov.roster.items()},
                    proposal_id=state.proposal.proposal_id,
                    workflow_id=state.workflow_id,
                    plan_hash=state.plan_hash or "",
                    now=workflow.now(),
                    seen_nonces=self._nonces,
                )
            except TokenRefused as exc:
                raise ValueError(f"token refused: {exc}") from None
            if claims.decision is not kind:
                raise ValueError(f"token refused: it is a {claims.decision.value}, not a {kind.value}")
            if inp.approver and inp.approver != claims.approver:
                raise ValueError(f"token refused: signed by {claims.approver}, not {inp.approver}")
            approver, reason, signed = claims.approver, claims.reason, True
        if not approver:
            raise ValueError("approver is required (or a signed token)")
        if approver == state.proposal.recommender:
            raise ValueError(
                f"{approver!r} proposed this change and cannot decide on it (separation of duties)"
            )
        if approver not in gov.roster:
            raise ValueError(f"{approver!r} is not an approver in the policy's roster")
        if any(d.approver == approver for d in self._current_decisions()):
            raise ValueError(f"{approver!r} has already decided on this plan; a person counts once")
        refusal = gov.may_decide(approver, self.tier, bool(state.freezes))
        if refusal:
            raise ValueError(refusal)
        if kind is DecisionKind.REJECT and not reason.strip():
            raise ValueError("a rejection needs a reason")
        if kind is DecisionKind.APPROVE and not signed and not gov.rules[self.tier].unsigned_allowed:
            raise ValueError(
                f"unsigned approvals are not accepted for {self.tier.value} risk: "
                f"sign it (`interlock approve {state.proposal.proposal_id} --as {approver}` "
                "with your key, or `interlock sign` for the Web UI)"
            )

    async def _decide(self, kind: DecisionKind, inp: DecisionInput) -> DecisionResult:
        approver, reason, signed = inp.approver, inp.reason, False
        if inp.token:
            claims = decode_claims(inp.token)
            approver, reason, signed = claims.approver, claims.reason, True
            self._nonces.add(claims.nonce)
        self.state.decisions.append(
            DecisionRecord(
                decision=kind,
                approver=approver,
                reason=reason.strip(),
                at=workflow.now(),
                groups=self.gov.groups_of(approver),
                signed=signed,
                plan_hash=self.state.plan_hash,
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

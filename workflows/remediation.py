"""The remediation workflow: one durable workflow per proposal.

checks -> risk -> preview -> human approval (Updates) -> execute -> verify -> rollback on failure.
Deterministic orchestration only: every side effect is an activity.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from interlock.models import (
        Assessment,
        DecisionInput,
        DecisionKind,
        DecisionRecord,
        DecisionResult,
        PlaybookResult,
        PlaybookRun,
        ProposalState,
        ProposalStatus,
        RemediationInput,
        Stage,
        TimelineEntry,
    )
    from interlock.policy import RiskSettings
    from interlock.presentation import approval_details
    from interlock.risk import RiskInput, score_risk
    from interlock.search import SA_RISK_TIER, SA_STATUS

CHECKS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
PLAYBOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=["ValueError"],
)


@workflow.defn(name="RemediationWorkflow")
class RemediationWorkflow:
    def __init__(self) -> None:
        self._state: ProposalState | None = None
        self._roster: dict[str, list[str]] = {}
        self._outcome: DecisionKind | None = None

    @property
    def state(self) -> ProposalState:
        assert self._state is not None
        return self._state

    @workflow.run
    async def run(self, inp: RemediationInput) -> ProposalState:
        self._state = ProposalState(
            proposal=inp.proposal,
            workflow_id=workflow.info().workflow_id,
            status=ProposalStatus.SUBMITTED,
            submitted_at=inp.submitted_at,
        )
        self._set_status(ProposalStatus.CHECKING)
        assessment = await workflow.execute_activity(
            "check_proposal",
            inp.proposal,
            result_type=Assessment,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=CHECKS_RETRY,
        )
        self.state.policy_version = assessment.policy_version
        self.state.evidence = assessment.evidence
        self.state.service = assessment.service
        if not assessment.ok or assessment.service is None:
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, assessment.reasons)
        self._roster = assessment.roster

        proposal = inp.proposal
        evidence = assessment.evidence
        self.state.risk = score_risk(
            RiskInput(
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
            RiskSettings(),
        )
        workflow.upsert_search_attributes([SA_RISK_TIER.value_set(self.state.risk.tier.value)])

        self._set_status(ProposalStatus.PREVIEWING)
        self.state.preview = await self._playbook(Stage.PREVIEW)
        if not self.state.preview.ok:
            return await self._finish(
                ProposalStatus.REJECTED_BY_CHECKS,
                [f"preview failed: {self.state.preview.error}"],
            )

        self._set_status(ProposalStatus.AWAITING_APPROVAL)
        workflow.set_current_details(approval_details(self.state))
        try:
            await workflow.wait_condition(
                lambda: self._outcome is not None,
                timeout=timedelta(seconds=assessment.approval_timeout_seconds),
            )
        except TimeoutError:
            # A timeout never approves.
            return await self._finish(
                ProposalStatus.EXPIRED,
                [f"no decision within {timedelta(seconds=assessment.approval_timeout_seconds)}"],
            )
        if self._outcome is DecisionKind.REJECT:
            last = self.state.decisions[-1]
            return await self._finish(
                ProposalStatus.REJECTED, [f"rejected by {last.approver}: {last.reason}"]
            )
        return await self._execute()

    async def _execute(self) -> ProposalState:
        self._set_status(ProposalStatus.EXECUTING)
        execution = self.state.execution = await self._playbook(Stage.EXECUTE)
        if execution.ok:
            self._set_status(ProposalStatus.VERIFYING)
            verification = self.state.verification = await self._playbook(
                Stage.VERIFY, execution.facts
            )
            if verification.ok:
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
                return await self._finish(
                    ProposalStatus.ROLLED_BACK, [*reasons, "rollback ran and verified"]
                )
            reasons.append(f"rollback verification failed: {check.error}")
        else:
            reasons.append(f"rollback failed: {rollback.error}")
        # Never a quiet success: a person has to look at this system now.
        return await self._finish(ProposalStatus.NEEDS_MANUAL_INTERVENTION, reasons)

    async def _playbook(self, stage: Stage, facts: dict[str, str] | None = None) -> PlaybookResult:
        proposal = self.state.proposal
        assert self.state.service is not None
        run = PlaybookRun(
            proposal_id=proposal.proposal_id,
            action=proposal.action,
            stage=stage,
            service=self.state.service.canonical,
            parameters=dict(proposal.parameters),
            facts=facts or {},
        )
        started = workflow.now()
        try:
            return await workflow.execute_activity(
                "run_playbook",
                run,
                result_type=PlaybookResult,
                start_to_close_timeout=timedelta(minutes=15),
                heartbeat_timeout=timedelta(seconds=15),
                retry_policy=PLAYBOOK_RETRY,
            )
        except ActivityError as exc:
            cause = exc.cause.message if exc.cause is not None else str(exc)
            return PlaybookResult(
                stage=stage,
                playbook="",
                status="error",
                rc=-1,
                ok=False,
                started_at=started,
                finished_at=workflow.now(),
                error=f"activity failed: {cause}",
            )

    async def _finish(self, status: ProposalStatus, reasons: list[str]) -> ProposalState:
        self.state.reasons = reasons
        self._set_status(status, "; ".join(reasons))
        workflow.set_current_details(approval_details(self.state))
        # Let in-flight Update handlers return their answer before the workflow closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    def _set_status(self, status: ProposalStatus, note: str = "") -> None:
        self.state.status = status
        self.state.timeline.append(TimelineEntry(at=workflow.now(), status=status, note=note))
        workflow.upsert_search_attributes([SA_STATUS.value_set(status.value)])

    # --- Queries and Updates -------------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> ProposalState:
        return self.state

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
        state = self.state if self._state is not None else None
        if state is None or state.status is not ProposalStatus.AWAITING_APPROVAL:
            current = state.status.value if state else "starting"
            raise ValueError(f"proposal is {current}, not awaiting_approval")
        if inp.approver == state.proposal.recommender:
            raise ValueError(
                f"{inp.approver!r} proposed this change and cannot decide on it "
                "(separation of duties)"
            )
        if inp.approver not in self._roster:
            raise ValueError(f"{inp.approver!r} is not an approver in the policy's roster")
        if kind is DecisionKind.REJECT and not inp.reason.strip():
            raise ValueError("a rejection needs a reason")

    async def _decide(self, kind: DecisionKind, inp: DecisionInput) -> DecisionResult:
        self.state.decisions.append(
            DecisionRecord(
                decision=kind,
                approver=inp.approver,
                reason=inp.reason.strip(),
                at=workflow.now(),
                groups=self._roster.get(inp.approver, []),
            )
        )
        self._outcome = kind
        # Answer once the workflow has acted on the decision, so the caller sees its effect.
        await workflow.wait_condition(
            lambda: self.state.status is not ProposalStatus.AWAITING_APPROVAL
        )
        return DecisionResult(
            proposal_id=self.state.proposal.proposal_id,
            decision=kind,
            approver=inp.approver,
            status=self.state.status,
        )

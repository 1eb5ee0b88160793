"""The remediation workflow's stages after approval: preview, execute, verify, roll back, and
the evidence asked again before and after a change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from interlock import gate
    from interlock.audit.events import EventKind
    from interlock.contracts import Activity
    from interlock.governance import (
        Assessment,
        plan_hash,
    )
    from interlock.models import (
        EvidenceRecheck,
        EvidenceReport,
        PlaybookResult,
        PlaybookRun,
        ProposalState,
        ProposalStatus,
        Stage,
    )
    from interlock.presentation import approval_details
    from interlock.workflows.core import PLAYBOOK_QUEUE_PATCH, PLAYBOOK_RETRY, WorkflowCore


def playbook_task_queue(task_queue: str) -> str:
    """Playbooks run on their own queue, so each worker can bound them to its cores."""
    return f"{task_queue}.playbooks"


def evidence_items(assessment: Assessment) -> list[dict[str, Any]]:
    items = assessment.evidence.items if assessment.evidence else []
    return [i.model_dump(mode="json") for i in items]


class ExecutionStages(WorkflowCore):
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
        still = gate.not_cleared(report, settle)
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

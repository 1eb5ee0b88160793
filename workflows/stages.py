"""The remediation workflow's stages after approval: preview, execute, verify, roll back, and
the evidence asked again before and after a change."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from interlock import gate, rollout
    from interlock.audit.events import EventKind
    from interlock.contracts import Activity
    from interlock.governance import (
        Assessment,
        plan_hash,
    )
    from interlock.models import (
        CHECK_OF,
        BatchResult,
        BatchStatus,
        ChangeResult,
        EvidenceRecheck,
        EvidenceReport,
        HostFacts,
        PlaybookResult,
        PlaybookRun,
        ProposalState,
        ProposalStatus,
        RolloutPlan,
        Stage,
    )
    from interlock.presentation import approval_details
    from interlock.risk import score_risk
    from interlock.search import SA_RISK_TIER
    from interlock.workflows import patches
    from interlock.workflows.core import PLAYBOOK_QUEUE_PATCH, PLAYBOOK_RETRY, WorkflowCore

# Versioned: proposals started before these keep running (and replaying) as they did.
# The plan hash binds each previewed task's host and the batches; risk sees the previewed hosts.
PLAN_HOSTS_PATCH = patches.PLAN_HOSTS.name
# Execution goes through the hosts batch by batch (execute, verify; roll back on failure).
ROLLOUT_PATCH = patches.ROLLOUT.name
# A preview that failed for infrastructure is tried again (the action's preview_retry).
PREVIEW_RETRY_PATCH = patches.PREVIEW_RETRY.name
# A change and its check in one Ansible run (the action's verify_separately off).
ONE_RUN_PATCH = patches.ONE_RUN.name
# A margin over a stage's own timeout (enforced by ansible-runner) for the activity around it.
ACTIVITY_MARGIN = timedelta(seconds=60)
DEFAULT_STAGE_TIMEOUT = timedelta(minutes=15)
ResultT = TypeVar("ResultT", PlaybookResult, ChangeResult)


def playbook_task_queue(task_queue: str) -> str:
    """Playbooks run on their own queue, so each worker can bound them to its cores."""
    return f"{task_queue}.playbooks"


def evidence_items(assessment: Assessment) -> list[dict[str, Any]]:
    items = assessment.evidence.items if assessment.evidence else []
    return [i.model_dump(mode="json") for i in items]


class ExecutionStages(WorkflowCore):
    # Why the last preview failed for infrastructure after its retries (None: it did not).
    _preview_failure: str | None

    async def _execute(self) -> ProposalState:
        assert self.state.preview is not None
        for d in self.state.decisions:
            if d.plan_hash == self.state.plan_hash:
                await self._audit_decision(d, later=True)
        # Fail closed: the start (and what led to it) is on record before anything touches a system.
        await self._audit(EventKind.EXECUTION_STARTED, data={"plan_hash": self.state.plan_hash})
        self._set_status(ProposalStatus.EXECUTING)
        workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        plan = self.state.preview.plan
        if rollout.rolled_out(plan) and workflow.patched(ROLLOUT_PATCH):
            assert plan is not None
            return await self._roll_out(plan)
        execution, checked = await self._change(
            Stage.EXECUTE, expected_digest=self.state.preview.playbooks_digest, abortable=True
        )
        self.state.execution = execution
        if execution.status == "already_executed":
            # A reset run under an old approval: the change ran before, and runs once only.
            return await self._finish(
                ProposalStatus.NEEDS_MANUAL_INTERVENTION, [f"not run: {execution.error}"]
            )
        await self._audit(
            EventKind.EXECUTION_FINISHED,
            data={"ok": execution.ok, "tasks": [t.model_dump(mode="json") for t in execution.tasks]},
            # Verified in the same run and nothing to wait for: the outcome follows at once and
            # is written with it. Never held over a rollback (an effect) or a settle wait.
            later=execution.ok and checked is not None and checked.ok and not self._settles(),
        )
        if execution.ok:
            if checked is None:
                # Verified in a run of its own: "verifying" while it runs (in one run: already done).
                self._set_status(ProposalStatus.VERIFYING)
            verification = self.state.verification = checked or await self._playbook(
                Stage.VERIFY, execution.host_facts
            )
            if verification.ok:
                unresolved = await self._evidence_not_cleared()
                if unresolved:
                    return await self._finish(ProposalStatus.COMPLETED_UNRESOLVED, unresolved)
                return await self._finish(ProposalStatus.COMPLETED, [])
            reasons = [f"verification failed: {verification.error}"]
        else:
            reasons = [f"execution failed: {execution.error}"]

        self._set_status(ProposalStatus.ROLLING_BACK)
        rollback, checked = await self._change(Stage.ROLLBACK, execution.host_facts)
        self.state.rollback = rollback
        if rollback.ok:
            check = self.state.rollback_verification = checked or await self._playbook(
                Stage.VERIFY_ROLLBACK, execution.host_facts
            )
            if check.ok:
                return await self._finish(ProposalStatus.ROLLED_BACK, [*reasons, "rollback ran and verified"])
            reasons.append(f"rollback verification failed: {check.error}")
        else:
            reasons.append(f"rollback failed: {rollback.error}")
        # Never a quiet success: a person has to look at this system now.
        return await self._finish(ProposalStatus.NEEDS_MANUAL_INTERVENTION, reasons)

    async def _roll_out(self, plan: RolloutPlan) -> ProposalState:
        """Execute then verify batch by batch. A failed batch (more than `max_failed` hosts
        failed) stops the rollout: the hosts already changed are rolled back, newest batch first,
        and the hosts of later batches are never touched. Each batch's progress is in the state
        (replayed after a crash, so a resumed rollout starts at the next unfinished batch)."""
        assert self.state.preview is not None
        batches = [BatchResult(index=i, hosts=list(hosts)) for i, hosts in enumerate(plan.batches)]
        self.state.execution = rollout.aggregate(Stage.EXECUTE, batches, self.state.preview)
        reasons: list[str] = []
        failed_total = 0
        stopped = False
        for batch in batches:
            if self._abort:
                reasons.append(f"stopped before batch {batch.index + 1}: pause --abort-running")
                stopped = True
                break
            if batch.index > 0 and plan.pause_seconds > 0:
                try:
                    await self._wait(lambda: self._abort, timeout=timedelta(seconds=plan.pause_seconds))
                except TimeoutError:
                    pass
                if self._abort:
                    reasons.append(f"stopped before batch {batch.index + 1}: pause --abort-running")
                    stopped = True
                    break
            outcome = await self._run_batch(batch, plan)
            self.state.execution = rollout.aggregate(Stage.EXECUTE, batches, self.state.preview)
            if outcome == "already_executed":
                assert batch.execution is not None
                return await self._finish(
                    ProposalStatus.NEEDS_MANUAL_INTERVENTION, [f"not run: {batch.execution.error}"]
                )
            if batch.status is BatchStatus.FAILED:
                reasons += rollout.batch_reasons(batch) or [f"batch {batch.index + 1} failed"]
                failed_total += len(rollout.failed_hosts(batch)) or len(batch.hosts)
                if failed_total > plan.max_failed:
                    stopped = True
                    break
        for later in batches:
            if later.status is BatchStatus.PENDING:
                later.status = BatchStatus.NOT_RUN
        self.state.execution = rollout.aggregate(Stage.EXECUTE, batches, self.state.preview)
        if not stopped:
            if reasons:
                # Failures within max_failed: the rollout went on, and says which hosts failed.
                return await self._finish(ProposalStatus.COMPLETED_UNRESOLVED, reasons)
            unresolved = await self._evidence_not_cleared()
            if unresolved:
                return await self._finish(ProposalStatus.COMPLETED_UNRESOLVED, unresolved)
            return await self._finish(ProposalStatus.COMPLETED, [])
        return await self._roll_back_batches(batches, reasons)

    async def _run_batch(self, batch: BatchResult, plan: RolloutPlan) -> str:
        assert self.state.preview is not None
        batch.status = BatchStatus.EXECUTING
        self._note(f"batch {batch.index + 1} of {len(plan.batches)}: {', '.join(batch.hosts)}")
        workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        execution, checked = await self._change(
            Stage.EXECUTE,
            expected_digest=self.state.preview.playbooks_digest,
            abortable=True,
            hosts=batch.hosts,
            batch=batch.index,
        )
        batch.execution = execution
        if execution.status == "already_executed":
            return "already_executed"
        batch.results = rollout.host_results(execution, batch.hosts)
        await self._audit(
            EventKind.EXECUTION_FINISHED,
            data={
                "batch": batch.index,
                "hosts": batch.hosts,
                "ok": execution.ok,
                "tasks": [t.model_dump(mode="json") for t in execution.tasks],
            },
        )
        if not execution.ok:
            batch.status = BatchStatus.FAILED
            return "failed"
        if checked is None:
            # Verified in a run of its own: "verifying" while it runs (in one run: already done).
            batch.status = BatchStatus.VERIFYING
            self._set_status(ProposalStatus.VERIFYING)
            workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        verification = batch.verification = self.state.verification = checked or await self._playbook(
            Stage.VERIFY, execution.host_facts, hosts=batch.hosts, batch=batch.index
        )
        if verification.ok:
            batch.status = BatchStatus.SUCCEEDED
        else:
            batch.status = BatchStatus.FAILED
            batch.results = rollout.host_results(verification, batch.hosts)
        if checked is None:
            self._set_status(ProposalStatus.EXECUTING)
        return batch.status.value

    async def _roll_back_batches(self, batches: list[BatchResult], reasons: list[str]) -> ProposalState:
        """Roll back exactly the hosts the forward change reached, newest batch first, each
        batch with the facts its own run reported; then verify each rollback."""
        self._set_status(ProposalStatus.ROLLING_BACK)
        rolled: list[str] = []
        failed: list[str] = []
        for batch in reversed(batches):
            hosts = rollout.hosts_to_roll_back(batch)
            if not hosts:
                continue
            assert batch.execution is not None
            batch.status = BatchStatus.ROLLING_BACK
            workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
            facts = {h: f for h, f in batch.execution.host_facts.items() if h in hosts}
            result, checked = await self._change(Stage.ROLLBACK, facts, hosts=hosts, batch=batch.index)
            batch.rollback = self.state.rollback = result
            check = None
            if result.ok:
                check = batch.rollback_verification = self.state.rollback_verification = (
                    checked
                    or await self._playbook(Stage.VERIFY_ROLLBACK, facts, hosts=hosts, batch=batch.index)
                )
            if check is not None and check.ok:
                batch.status = BatchStatus.ROLLED_BACK
                rolled += hosts
                # Each host's line says where it ended (its rollback verified), except a host
                # whose failure caused the rollback: its reason stays what the approver reads.
                batch.results = rollout.after_rollback(batch.results, rollout.host_results(check, hosts))
            else:
                batch.status = BatchStatus.ROLLBACK_FAILED
                failed += hosts
                why = result if check is None else check
                batch.results = rollout.host_results(why, hosts)
                word = "rollback" if check is None else "rollback verification"
                reasons += [f"{word} failed: {r.reason}" for r in batch.results if r.reason]
        self.state.execution = rollout.aggregate(Stage.EXECUTE, batches, self.state.preview)
        if failed:
            # Never a quiet success: a person has to look at these hosts now.
            return await self._finish(ProposalStatus.NEEDS_MANUAL_INTERVENTION, reasons)
        untouched = [h for b in batches if b.status is BatchStatus.NOT_RUN for h in b.hosts]
        reasons.append(
            f"rollback ran and verified on {', '.join(sorted(rolled)) or 'no host'}"
            + (f"; never touched: {', '.join(untouched)}" if untouched else "")
        )
        return await self._finish(ProposalStatus.ROLLED_BACK, reasons)

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

    def _settles(self) -> bool:
        """Whether a successful run is followed by waiting for its evidence to clear."""
        settle = self.w.assessment.settle_seconds if self.w.assessment else None
        return settle is not None and self.state.evidence is not None

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
        proposal = self.state.proposal
        preview = self.state.preview = await self._playbook(Stage.PREVIEW, hosts=proposal.target.hosts)
        self._preview_failure = None
        if rollout.infrastructure_failure(preview) and workflow.patched(PREVIEW_RETRY_PATCH):
            preview = await self._retry_preview(preview)
        if not preview.ok:
            return False
        assert self.state.service is not None
        self.state.plan_hash = plan_hash(
            proposal.action,
            self.state.service.canonical,
            proposal.target.environment,
            dict(proposal.parameters),
            preview,
        )
        if preview.plan is not None and workflow.patched(PLAN_HOSTS_PATCH):
            self.state.plan_hash = rollout.fleet_plan_hash(self.state.plan_hash, preview)
            self._rescore_with_hosts(preview.plan)
        return True

    async def _retry_preview(self, preview: PlaybookResult) -> PlaybookResult:
        """Try a preview that failed for infrastructure again, as often as the action's
        preview_retry says, waiting its backoff (doubled each time) on a durable timer. Each try is
        an audit event and a timeline entry; still failing, `_preview_failure` says why."""
        assessment = self.w.assessment
        attempts = (assessment.preview_attempts if assessment else None) or 1
        backoff = (assessment.preview_backoff_seconds if assessment else None) or 0.0
        attempt = 1
        while True:
            why = rollout.infrastructure_failure(preview)
            last = why is not None and attempt >= attempts
            wait = backoff * 2 ** (attempt - 1)
            note = f"preview attempt {attempt} of {attempts}: " + (
                "ok" if why is None else why if last else f"{why}; next try in {wait:g}s"
            )
            self._note(note)
            await self._audit(
                EventKind.PREVIEW_ATTEMPT,
                data={"attempt": attempt, "attempts": attempts, "ok": why is None, "reason": why or ""},
            )
            if why is None:
                return preview
            if last or self._cancel is not None:
                self._preview_failure = f"preview failed after {attempt} attempt(s): {why}"
                return preview
            if wait > 0:
                try:
                    await self._wait(lambda: False, timeout=timedelta(seconds=wait))
                except TimeoutError:
                    pass
                if self._cancel is not None:
                    self._preview_failure = f"preview failed after {attempt} attempt(s): {why}"
                    return preview
            attempt += 1
            proposal = self.state.proposal
            preview = self.state.preview = await self._playbook(Stage.PREVIEW, hosts=proposal.target.hosts)

    def _rescore_with_hosts(self, plan: RolloutPlan) -> None:
        """Risk again, now that the preview says which hosts would change (the `hosts` factor)."""
        assessment = self.w.assessment
        if not plan.fleet or assessment is None or assessment.risk_input is None or self._w is None:
            return
        assert self.state.preview is not None
        changing = sorted({t.host for t in self.state.preview.changed_tasks if t.host})
        facts = assessment.risk_input.model_copy(
            update={"hosts_changing": changing, "fleet_size": len(plan.fleet)}
        )
        self.state.risk = score_risk(facts, self.gov.risk)
        if self._search_attributes:
            workflow.upsert_search_attributes([SA_RISK_TIER.value_set(self.tier.value)])

    async def _playbook(
        self,
        stage: Stage,
        facts: HostFacts | None = None,
        expected_digest: str | None = None,
        abortable: bool = False,
        hosts: list[str] | None = None,
        batch: int | None = None,
    ) -> PlaybookResult:
        run = self._playbook_run(stage, facts, expected_digest, hosts, batch)
        started = workflow.now()
        try:
            return await self._run_activity(Activity.RUN_PLAYBOOK, run, PlaybookResult, [stage], abortable)
        except (ActivityError, CancelledError) as exc:
            return self._failed_run(stage, exc, started)

    async def _change(
        self,
        stage: Stage,
        facts: HostFacts | None = None,
        expected_digest: str | None = None,
        abortable: bool = False,
        hosts: list[str] | None = None,
        batch: int | None = None,
    ) -> tuple[PlaybookResult, PlaybookResult | None]:
        """A change (execute, rollback) and, when the action runs them together, its check from
        the same Ansible run; otherwise the change alone, and the caller runs the check."""
        plan = self.state.preview.plan if self.state.preview is not None else None
        if plan is None or plan.verify_separately or not workflow.patched(ONE_RUN_PATCH):
            return await self._playbook(stage, facts, expected_digest, abortable, hosts, batch), None
        run = self._playbook_run(stage, facts, expected_digest, hosts, batch)
        started = workflow.now()
        try:
            result = await self._run_activity(
                Activity.RUN_CHANGE, run, ChangeResult, [stage, CHECK_OF[stage]], abortable
            )
        except (ActivityError, CancelledError) as exc:
            return self._failed_run(stage, exc, started), None
        return result.change, result.check

    def _playbook_run(
        self,
        stage: Stage,
        facts: HostFacts | None,
        expected_digest: str | None,
        hosts: list[str] | None,
        batch: int | None,
    ) -> PlaybookRun:
        proposal = self.state.proposal
        assert self.state.service is not None
        return PlaybookRun(
            proposal_id=proposal.proposal_id,
            action=proposal.action,
            stage=stage,
            service=self.state.service.canonical,
            parameters=dict(proposal.parameters),
            host_facts=facts or {},
            expected_digest=expected_digest,
            environment=proposal.target.environment,
            hosts=list(hosts) if hosts is not None else None,
            batch=batch,
        )

    async def _run_activity(
        self,
        name: Activity,
        run: PlaybookRun,
        result_type: type[ResultT],
        stages: list[Stage],
        abortable: bool,
    ) -> ResultT:
        # The policy's timeouts for the stages (from the preview's plan) plus a margin: the
        # playbooks themselves are stopped at the policy's time by the activity.
        plan = self.state.preview.plan if self.state.preview is not None else None
        limits = [plan.timeouts.get(s.value) if plan is not None else None for s in stages]
        timeout = (
            timedelta(seconds=sum(limit for limit in limits if limit)) + ACTIVITY_MARGIN
            if all(limits)
            else DEFAULT_STAGE_TIMEOUT * len(stages)
        )
        handle = workflow.start_activity(
            name,
            run,
            # Versioned: proposals started before the playbook queue existed keep the main queue.
            task_queue=(
                playbook_task_queue(workflow.info().task_queue)
                if workflow.patched(PLAYBOOK_QUEUE_PATCH)
                else None
            ),
            result_type=result_type,
            start_to_close_timeout=timeout,
            heartbeat_timeout=timedelta(seconds=15),
            retry_policy=PLAYBOOK_RETRY,
        )
        if abortable:
            # Ends early on a cancellation request too, which never stops a change in flight.
            await self._wait(lambda: handle.done() or self._abort)
            if self._abort and not handle.done():
                handle.cancel()
        return await self._shielded(handle)

    def _failed_run(
        self, stage: Stage, exc: ActivityError | CancelledError, started: datetime
    ) -> PlaybookResult:
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

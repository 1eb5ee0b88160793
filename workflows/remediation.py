"""The remediation workflow: one durable workflow per proposal.

checks -> risk -> preview -> approval gate (Updates, quorum, signatures, freezes, pauses)
-> re-check -> execute -> verify -> rollback on failure.
Deterministic orchestration only: every side effect is an activity, every rule is in
interlock.gate, and the whole state is one object (`ApprovalWait`), carried whole by
continue-as-new and judged again by the fresh run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from interlock import gate
    from interlock.audit.events import AuditEventIn, EventKind
    from interlock.contracts import Activity, Workflow
    from interlock.governance import (
        AUTO_APPROVER,
        DEFAULT_HISTORY_EVENT_LIMIT,
        ApprovalWait,
        Assessment,
        GovernanceCheck,
        RemediationRun,
        risk_input_of,
    )
    from interlock.models import (
        FACTS_REFUSED,
        DecisionKind,
        DecisionRecord,
        PrecheckInput,
        PrecheckResult,
        ProposalState,
        ProposalStatus,
    )
    from interlock.policy import Mode
    from interlock.presentation import approval_details
    from interlock.risk import score_risk
    from interlock.search import SA_RISK_TIER
    from interlock.workflows.core import (
        AUDIT_BATCH_PATCH,
        REDERIVE_PATCH,
        one_line,
    )
    from interlock.workflows.decisions import DecisionHandlers
    from interlock.workflows.stages import ExecutionStages, evidence_items, playbook_task_queue


@workflow.defn(name=Workflow.REMEDIATION)
class RemediationWorkflow(ExecutionStages, DecisionHandlers):
    @workflow.init
    def __init__(self, raw: RawValue) -> None:
        # The input is untrusted (any namespace writer can start this workflow): decoded here,
        # so one the model refuses ends as rejected_by_checks instead of failing out of sight.
        self._input: RemediationRun | None = None
        self._refusal = ""
        try:
            self._input = workflow.payload_converter().from_payload(raw.payload, RemediationRun)
        except (ValidationError, ValueError, TypeError) as exc:
            self._refusal = one_line(exc)
        self._w: ApprovalWait | None = None
        self._abort = False
        self._cancel: str | None = None
        self._notifications: list[workflow.ActivityHandle[None]] = []
        self._search_attributes = self._input.search_attributes if self._input else True
        self._audit_batching = False
        self._audit_queue: list[AuditEventIn] = []
        self._announced = False
        self._preview_failure: str | None = None

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
            data={
                "proposal": proposal.model_dump(mode="json"),
                "policy": assessment.policy_version,
                "channel": inp.channel,
            },
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
        self.state.risk = score_risk(risk_input_of(assessment, proposal), self.gov.risk)
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
            return await self._preview_refused()
        assert self.state.preview is not None
        await self._audit(
            EventKind.PREVIEW,
            data={
                "plan_hash": self.state.plan_hash,
                "changed": [t.task for t in self.state.preview.changed_tasks],
            },
        )
        # The preview can raise the tier (the hosts it would change): the ceiling is checked again.
        above = gate.ceiling_refusal(proposal.recommender, self.tier, self.gov)
        if above:
            await self._audit(EventKind.SECURITY, data={"ok": False, "reasons": [above]}, later=True)
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, [above])
        self.state.mode = self.gov.mode.value
        if self.gov.mode is Mode.SHADOW:
            # Assessed and recorded; nobody is asked and nothing runs.
            return await self._finish(
                ProposalStatus.SHADOWED, ["shadow mode: assessed and recorded, not run"]
            )
        if self.gov.mode is Mode.AUTO:
            self._maybe_auto_approve()
        self.w.escalate_at = workflow.now() + self.gov.rules[self.tier].escalate_after
        self.w.expire_at = workflow.now() + gate.expire_after(
            self.gov, self.tier, self.w.approval_timeout_seconds
        )
        return await self._gate_then_execute()

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
                if self._preview_failure is not None:
                    return await self._preview_refused()
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

    async def _preview_refused(self) -> ProposalState:
        """How a failed preview ends: preview_failed when no try reached the hosts, cancelled when
        asked to during its retries, rejected_by_checks when it ran and refused the change."""
        if self._preview_failure is not None:
            if self._cancel is not None:
                return await self._finish_cancelled()
            return await self._finish(ProposalStatus.PREVIEW_FAILED, [self._preview_failure])
        preview = self.state.preview
        error = preview.error if preview else ""
        if preview is not None and preview.status == FACTS_REFUSED:
            # The preview ran, but does not report what verify and rollback were declared to get.
            return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, [error or "declared facts refused"])
        return await self._finish(ProposalStatus.REJECTED_BY_CHECKS, [f"preview failed: {error}"])

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
                group = gate.escalation_group(self.gov, self.tier)
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


__all__ = ["RemediationWorkflow", "playbook_task_queue"]

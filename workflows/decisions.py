"""The doors into a running proposal: the `status` query, the pause/resume/add_duplicate
Signals and the approve/reject Updates. Each refuses what the gate (interlock.gate) refuses,
before anything is written to history."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from interlock import gate
    from interlock.audit.events import EventKind
    from interlock.contracts import Activity, Query, Signal, Update
    from interlock.governance import (
        Assessment,
    )
    from interlock.models import (
        AttachDuplicate,
        DecisionInput,
        DecisionKind,
        DecisionRecord,
        DecisionResult,
        Duplicate,
        Pause,
        PauseScope,
        ProposalState,
        ProposalStatus,
    )
    from interlock.presentation import approval_details
    from interlock.signing import decode_claims
    from interlock.workflows.core import (
        DUPLICATE_KEY_PATCH,
        MAX_RECORDED_DUPLICATES,
        WorkflowCore,
    )
    from interlock.workflows.stages import evidence_items


class DecisionHandlers(WorkflowCore):
    @workflow.query(name=Query.STATUS)
    def status(self) -> ProposalState:
        if self._w is None:
            raise ApplicationError(
                f"{ProposalStatus.REJECTED_BY_CHECKS.value}: input refused: {self._refusal}"
            )
        return self.state

    @workflow.signal(name=Signal.PAUSE)
    def pause(self, pause: Pause) -> None:
        if self._w is None:
            return
        if pause not in self.w.pauses:
            self.w.pauses.append(pause)
        if self._active_pauses() and pause.abort_running and self.state.status is ProposalStatus.EXECUTING:
            self._abort = True

    @workflow.signal(name=Signal.ADD_DUPLICATE)
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
        refusal = gate.duplicate_refusal(owner_key, assessment)
        if refusal and workflow.patched(DUPLICATE_KEY_PATCH):
            await self._audit(
                EventKind.SECURITY,
                actor=dup.recommender,
                data={
                    "ok": False,
                    "duplicate": dup.proposal_id,
                    "reasons": [refusal, *assessment.reasons],
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

    @workflow.signal(name=Signal.RESUME)
    def resume(self, scope: PauseScope) -> None:
        if self._w is None:
            return
        self.w.pauses = [p for p in self.w.pauses if p.scope != scope]
        self._active_pauses()

    @workflow.update(name=Update.APPROVE)
    async def approve(self, inp: DecisionInput) -> DecisionResult:
        return await self._decide(DecisionKind.APPROVE, inp)

    @approve.validator
    def _validate_approve(self, inp: DecisionInput) -> None:
        self._validate(DecisionKind.APPROVE, inp)

    @workflow.update(name=Update.REJECT)
    async def reject(self, inp: DecisionInput) -> DecisionResult:
        return await self._decide(DecisionKind.REJECT, inp)

    @reject.validator
    def _validate_reject(self, inp: DecisionInput) -> None:
        self._validate(DecisionKind.REJECT, inp)

    def _validate(self, kind: DecisionKind, inp: DecisionInput) -> None:
        # Validators refuse before anything is written to history.
        status = self._w.state.status if self._w is not None else None
        refusal = gate.decision_window_refusal(kind, status, self._cancel is not None)
        if refusal:
            raise ValueError(refusal)
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
            # The approver's summary names who may still approve: refresh it after each approval
            # short of the quorum, or the UI would still show the quorum as it was before.
            workflow.set_current_details(approval_details(self.state, gov=self.w.governance))
        return DecisionResult(
            proposal_id=self.state.proposal.proposal_id,
            decision=kind,
            approver=approver,
            status=self.state.status,
        )

"""The approval gate's rules: who may decide, when decisions are enough, what the policy approves
on its own. Pure functions over (proposal, policy snapshot, decisions, now), so each rule is
tested in milliseconds; the workflow and its Update validators only call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from interlock.governance import AUTO_APPROVER, Assessment, Governance
from interlock.models import (
    DecisionInput,
    DecisionKind,
    DecisionRecord,
    EvidenceReport,
    Pause,
    Proposal,
    ProposalStatus,
    RiskTier,
)
from interlock.signing import TokenRefused, verify


class DecisionRefused(ValueError):
    """A decision the gate does not accept; the message is the one-line reason."""


@dataclass(frozen=True)
class GateView:
    """What the gate judges a decision against: one proposal's plan, tier and policy snapshot."""

    proposal: Proposal
    workflow_id: str
    plan_hash: str | None
    tier: RiskTier
    gov: Governance
    frozen: bool


@dataclass(frozen=True)
class Ballot:
    """An accepted decision: who, why, and whether a signed token stands behind it."""

    approver: str
    reason: str
    signed: bool
    token: str | None = None
    nonce: str | None = None


def current(decisions: list[DecisionRecord], plan_hash: str | None) -> list[DecisionRecord]:
    """Decisions that count: those bound to the plan in force (a new preview voids the rest)."""
    return [d for d in decisions if d.plan_hash in (None, plan_hash)]


def rejected(decisions: list[DecisionRecord]) -> bool:
    return any(d.decision is DecisionKind.REJECT for d in decisions)


def quorum(
    decisions: list[DecisionRecord], gov: Governance, tier: RiskTier, frozen: bool
) -> tuple[bool, str]:
    """Whether the approvals so far are enough; otherwise what is still missing."""
    rule = gov.rules[tier]
    by_person: dict[str, DecisionRecord] = {}
    for d in decisions:
        if d.decision is DecisionKind.APPROVE:
            by_person.setdefault(d.approver, d)  # the same person counts once
    people = list(by_person.values())
    missing: list[str] = []
    if len(people) < rule.approvals:
        missing.append(f"{rule.approvals - len(people)} more approval(s) ({len(people)}/{rule.approvals})")
    if rule.require_owner and not any(gov.owner_group in d.groups for d in people):
        missing.append(f"an approval from the owning group {gov.owner_group}")
    if rule.require_group and not any(rule.require_group in d.groups for d in people):
        missing.append(f"an approval from {rule.require_group}")
    if frozen and not any(gov.emergency_group in d.groups for d in people):
        missing.append(f"an approval from {gov.emergency_group} (freeze in force)")
    return (not missing, "; ".join(missing))


def ceiling_refusal(recommender: str, tier: RiskTier, gov: Governance) -> str | None:
    """A recommender may propose only up to its scope's highest tier: above it is a violation."""
    ceiling = gov.recommender_max_tier
    if ceiling is not None and tier.rank > ceiling.rank:
        return f"security: {recommender} may propose up to {ceiling.value} risk; this is {tier.value}"
    return None


def auto_approval(tier: RiskTier, confidence: float, gov: Governance, frozen: bool) -> str | None:
    """The reason the policy approves on its own (auto mode), or None when a person must."""
    if (
        tier.rank <= gov.auto_max_tier.rank
        and tier not in (RiskTier.HIGH, RiskTier.CRITICAL)
        and confidence >= gov.auto_min_confidence
        and not frozen
    ):
        return (
            f"auto mode: {tier.value} risk at or below {gov.auto_max_tier.value}, "
            f"confidence {confidence:.2f} >= {gov.auto_min_confidence:.2f}"
        )
    return None


def judge(
    kind: DecisionKind,
    inp: DecisionInput,
    view: GateView,
    decisions: list[DecisionRecord],
    nonces: set[str] | frozenset[str],
    now: datetime,
) -> Ballot:
    """Accept a decision or raise DecisionRefused naming why. `decisions` are those that count."""
    gov = view.gov
    approver, reason, signed, nonce = inp.approver, inp.reason, False, None
    if inp.token:
        try:
            claims = verify(
                inp.token,
                public_keys={n: a.public_key for n, a in gov.roster.items()},
                proposal_id=view.proposal.proposal_id,
                workflow_id=view.workflow_id,
                plan_hash=view.plan_hash or "",
                now=now,
                seen_nonces=nonces,
                max_lifetime=gov.token_max_lifetime,
            )
        except TokenRefused as exc:
            raise DecisionRefused(f"token refused: {exc}") from None
        if claims.decision is not kind:
            raise DecisionRefused(f"token refused: it is a {claims.decision.value}, not a {kind.value}")
        if inp.approver and inp.approver != claims.approver:
            raise DecisionRefused(f"token refused: signed by {claims.approver}, not {inp.approver}")
        approver, reason, signed, nonce = claims.approver, claims.reason, True, claims.nonce
    if not approver:
        raise DecisionRefused("approver is required (or a signed token)")
    if approver == view.proposal.recommender:
        raise DecisionRefused(
            f"{approver!r} proposed this change and cannot decide on it (separation of duties)"
        )
    if approver not in gov.roster:
        raise DecisionRefused(f"{approver!r} is not an approver in the policy's roster")
    if any(d.approver == approver for d in decisions):
        raise DecisionRefused(f"{approver!r} has already decided on this plan; a person counts once")
    refusal = gov.may_decide(approver, view.tier, view.frozen)
    if refusal:
        raise DecisionRefused(refusal)
    if kind is DecisionKind.REJECT and not reason.strip():
        raise DecisionRefused("a rejection needs a reason")
    if kind is DecisionKind.APPROVE and not signed and not gov.rules[view.tier].unsigned_allowed:
        raise DecisionRefused(
            f"unsigned approvals are not accepted for {view.tier.value} risk: "
            f"sign it (`interlock approve {view.proposal.proposal_id} --as {approver}` "
            "with your key, or `interlock sign` for the Web UI)"
        )
    return Ballot(approver=approver, reason=reason.strip(), signed=signed, token=inp.token, nonce=nonce)


def recheck_carried(
    decisions: list[DecisionRecord], view: GateView, confidence: float
) -> tuple[list[DecisionRecord], list[str], set[str]]:
    """Decisions carried into a continued run, judged again instead of adopted.

    Each is re-judged as it was made (its own time, against the policy in force now): a signed
    one by its token (signature, binding, plan, roster), an unsigned one by the tier's rule, the
    policy's own by the auto rule. Returns (kept, why each other was dropped, nonces of the kept).
    """
    kept: list[DecisionRecord] = []
    dropped: list[str] = []
    nonces: set[str] = set()
    for d in decisions:
        if d.plan_hash != view.plan_hash:
            kept.append(d)  # bound to an older plan: on record, never counted
            continue
        try:
            if d.approver == AUTO_APPROVER or not d.human:
                why = auto_approval(view.tier, confidence, view.gov, view.frozen)
                if d.approver != AUTO_APPROVER or d.human or why is None:
                    raise DecisionRefused("the policy would not approve this on its own")
                kept.append(d)
                continue
            if d.signed and not d.token:
                raise DecisionRefused("marked signed but carries no token")
            inp = (
                DecisionInput(token=d.token)
                if d.signed
                else DecisionInput(approver=d.approver, reason=d.reason)
            )
            ballot = judge(d.decision, inp, view, current(kept, view.plan_hash), nonces, d.at)
            if ballot.approver != d.approver:
                raise DecisionRefused(f"the token was signed by {ballot.approver}, not {d.approver}")
            if d.signed and ballot.reason != d.reason:
                raise DecisionRefused("the recorded reason is not the one the token signs")
        except DecisionRefused as exc:
            dropped.append(f"{d.decision.value} by {d.approver!r} dropped: {exc}")
            continue
        if ballot.nonce:
            nonces.add(ballot.nonce)
        kept.append(d.model_copy(update={"groups": view.gov.groups_of(d.approver)}))
    return kept, dropped, nonces


def audit_event_id(proposal_id: str, run_id: str, seq: int, kind: str) -> str:
    """The same on every retry and replay of the write: the store records each event once."""
    return f"{proposal_id}/{run_id}/{seq}/{kind}"


def headline(action: str, service: str, environment: str, recommender: str, tier: RiskTier | None) -> str:
    """One line naming a proposal in notifications (recommender text never appears in it)."""
    risk = f", {tier.value} risk" if tier else ""
    return f"{action} on {service} ({environment}{risk}) from {recommender}"


def expire_after(gov: Governance, tier: RiskTier, approval_timeout_seconds: float | None) -> timedelta:
    """T2: the action's own approval timeout, else the tier's. A timeout never approves."""
    if approval_timeout_seconds:
        return timedelta(seconds=approval_timeout_seconds)
    return gov.rules[tier].expire_after


def escalation_group(gov: Governance, tier: RiskTier) -> str:
    """Who is told at T1: the tier's escalation group, else the service's owners."""
    return gov.rules[tier].escalation_group or gov.owner_group


def active_pauses(pauses: list[Pause], action: str, recommender: str, service: str) -> list[Pause]:
    return [p for p in pauses if p.scope.covers(action, recommender, service)]


def decision_window_refusal(
    kind: DecisionKind, status: ProposalStatus | None, cancelling: bool
) -> str | None:
    """Decisions are taken only while the proposal waits for one (a rejection also while paused)."""
    paused_reject = kind is DecisionKind.REJECT and status is ProposalStatus.PAUSED
    if status is None or (status is not ProposalStatus.AWAITING_APPROVAL and not paused_reject):
        return f"proposal is {status.value if status else 'starting'}, not awaiting_approval"
    if cancelling:
        return "proposal is being cancelled"
    return None


def duplicate_refusal(owner_key: str | None, duplicate: Assessment) -> str | None:
    """A duplicate is attached only when it is a proposal for the owner's problem (its dedup key)."""
    if duplicate.security_violation:
        return "duplicate refused: security violation"
    if owner_key is None or duplicate.dedup_key != owner_key:
        return "duplicate refused: not the same problem (dedup key)"
    return None


def not_cleared(report: EvidenceReport, settle_seconds: float) -> list[str]:
    """After a successful run: each item that still holds, or could not be re-read, in words."""
    return [
        f"not resolved within {settle_seconds:g}s: {i.source} {i.ref}: "
        + (i.reason if i.fetched else f"could not re-read: {i.reason}")
        for i in report.items
        if i.supports or not i.fetched
    ]


@dataclass(frozen=True)
class Candidate:
    """Someone in the roster who may still approve, and which missing requirements they meet."""

    name: str
    groups: tuple[str, ...]
    fills: tuple[str, ...] = ()


@dataclass(frozen=True)
class StillNeeded:
    """What the quorum still lacks (`missing`, as `quorum` words it) and who may supply it."""

    approvals: int
    groups: tuple[str, ...]
    missing: str
    candidates: tuple[Candidate, ...]
    unsigned_allowed: bool


def still_needed(
    decisions: list[DecisionRecord], gov: Governance, tier: RiskTier, frozen: bool, recommender: str
) -> StillNeeded:
    """Who may still approve for the remaining quorum: the roster less the recommender, those
    who have decided, and those outside the tier's groups (the rules `judge` applies).
    `decisions` are those that count (see `current`)."""
    rule = gov.rules[tier]
    approvers = {d.approver for d in decisions if d.decision is DecisionKind.APPROVE}
    decided = {d.approver for d in decisions}
    approved_groups = {g for d in decisions if d.decision is DecisionKind.APPROVE for g in d.groups}
    groups: list[str] = []
    if rule.require_owner and gov.owner_group not in approved_groups:
        groups.append(gov.owner_group)
    if rule.require_group and rule.require_group not in approved_groups:
        groups.append(rule.require_group)
    if frozen and gov.emergency_group not in approved_groups:
        groups.append(gov.emergency_group)
    remaining = max(0, rule.approvals - len(approvers))
    eligible = [
        Candidate(
            name=name,
            groups=tuple(entry.groups),
            fills=tuple(g for g in groups if g in entry.groups),
        )
        for name, entry in sorted(gov.roster.items())
        if name not in decided and name != recommender and gov.may_decide(name, tier, frozen) is None
    ]
    # When every approval still needed must bring a missing group, someone outside those groups
    # cannot help: with one approval left, only who brings every missing group is named.
    if groups and remaining <= len(groups):
        need = len(groups) if remaining <= 1 else 1
        eligible = [c for c in eligible if len(c.fills) >= need]
    candidates = tuple(eligible)
    _, missing = quorum(decisions, gov, tier, frozen)
    return StillNeeded(
        approvals=remaining,
        groups=tuple(groups),
        missing=missing,
        candidates=candidates,
        unsigned_allowed=rule.unsigned_allowed,
    )

"""The approval gate's rules, one test per rule, no server: interlock.gate is pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from interlock import gate
from interlock.examples import example_proposal
from interlock.gate import DecisionRefused, GateView
from interlock.governance import AUTO_APPROVER, Governance
from interlock.models import DecisionInput, DecisionKind, DecisionRecord, Proposal, RiskTier
from interlock.policy import ApprovalRule, Approver, Mode, default_rules
from interlock.signing import generate_key, sign

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
PLAN = "plan-1"


def keypair() -> tuple[object, str]:
    pem, public = generate_key()
    return serialization.load_pem_private_key(pem.encode(), password=None), public


KEYS = {name: keypair() for name in ("alice", "bob", "carol", "erin")}


def governance(**kw: object) -> Governance:
    rules = default_rules()
    rules[RiskTier.HIGH] = ApprovalRule(approvals=2, require_owner=True)
    rules[RiskTier.CRITICAL] = ApprovalRule(approvals=2, require_group="security", groups=["security", "sre"])
    return Governance(
        rules=rules,
        roster={
            "alice": Approver(groups=["sre"], public_key=KEYS["alice"][1]),
            "bob": Approver(groups=["payments"], public_key=KEYS["bob"][1]),
            "carol": Approver(groups=["security"], public_key=KEYS["carol"][1]),
            "erin": Approver(groups=["emergency"], public_key=KEYS["erin"][1]),
            "triage-bot": Approver(groups=["sre"]),
        },
        owner_group="payments",
        **kw,
    )


def proposal() -> Proposal:
    return Proposal.model_validate_json(json.dumps(example_proposal("restart_service", proposal_id="prop-1")))


def view(tier: RiskTier = RiskTier.LOW, frozen: bool = False, gov: Governance | None = None) -> GateView:
    return GateView(proposal(), "prop-1", PLAN, tier, gov or governance(), frozen)


def token(who: str, decision: str = "approve", plan: str = PLAN, at: datetime = NOW, **kw: object) -> str:
    return sign(
        KEYS[who][0],  # type: ignore[arg-type]
        proposal_id=kw.pop("proposal_id", "prop-1"),  # type: ignore[arg-type]
        workflow_id="prop-1",
        plan_hash=plan,
        decision=DecisionKind(decision),
        approver=who,
        reason="checked",
        now=at,
        **kw,  # type: ignore[arg-type]
    )


def record(
    who: str, groups: list[str], kind: DecisionKind = DecisionKind.APPROVE, **kw: object
) -> DecisionRecord:
    fields: dict[str, object] = {"reason": "ok", "at": NOW, "plan_hash": PLAN, **kw}
    return DecisionRecord(decision=kind, approver=who, groups=groups, **fields)  # type: ignore[arg-type]


def judge(
    inp: DecisionInput, v: GateView | None = None, kind: DecisionKind = DecisionKind.APPROVE, **kw: object
):
    return gate.judge(
        kind, inp, v or view(), kw.get("decisions", []), kw.get("nonces", frozenset()), kw.get("now", NOW)
    )  # type: ignore[arg-type]


# --- judge: who may decide ---------------------------------------------------------------


def test_an_unsigned_approval_where_the_tier_allows_it() -> None:
    ballot = judge(DecisionInput(approver="alice", reason="fine"))
    assert (ballot.approver, ballot.signed) == ("alice", False)


@pytest.mark.parametrize(
    ("inp", "tier", "refusal"),
    [
        (DecisionInput(), RiskTier.LOW, "approver is required"),
        (DecisionInput(approver="triage-bot"), RiskTier.LOW, "separation of duties"),
        (DecisionInput(approver="mallory"), RiskTier.LOW, "not an approver in the policy's roster"),
        (DecisionInput(approver="bob"), RiskTier.HIGH, "unsigned approvals are not accepted for high"),
        (DecisionInput(approver="bob"), RiskTier.CRITICAL, "outside the groups that decide critical"),
    ],
)
def test_who_may_not_decide(inp: DecisionInput, tier: RiskTier, refusal: str) -> None:
    with pytest.raises(DecisionRefused, match=refusal):
        judge(inp, view(tier))


def test_a_person_counts_once_per_plan() -> None:
    with pytest.raises(DecisionRefused, match="already decided on this plan"):
        judge(DecisionInput(approver="alice"), decisions=[record("alice", ["sre"])])


def test_a_rejection_needs_a_reason() -> None:
    with pytest.raises(DecisionRefused, match="needs a reason"):
        judge(DecisionInput(approver="alice", reason="  "), kind=DecisionKind.REJECT)


def test_the_emergency_group_may_decide_only_during_a_freeze() -> None:
    with pytest.raises(DecisionRefused, match="outside the groups"):
        judge(DecisionInput(token=token("erin")), view(RiskTier.CRITICAL))
    assert judge(DecisionInput(token=token("erin")), view(RiskTier.CRITICAL, frozen=True)).signed


# --- judge: signed tokens -----------------------------------------------------------------


def test_a_signed_approval_is_accepted_with_its_nonce() -> None:
    ballot = judge(DecisionInput(token=token("bob")), view(RiskTier.HIGH))
    assert ballot.signed and ballot.approver == "bob" and ballot.nonce


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (lambda: "not-a-token", "malformed token"),
        (lambda: token("bob", proposal_id="prop-2"), "binding:"),
        (lambda: token("bob", plan="plan-0"), "plan:"),
        (lambda: token("bob", at=NOW - timedelta(hours=1)), "expiry:"),
        (lambda: token("bob", lifetime=timedelta(days=365)), "lifetime:"),
        (lambda: token("bob", decision="reject"), "it is a reject, not a approve"),
    ],
)
def test_a_token_that_fails_a_check_is_refused_naming_it(make, refusal: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecisionRefused, match=refusal):
        judge(DecisionInput(token=make()), view(RiskTier.HIGH))


def test_a_forged_token_is_refused() -> None:
    payload, signature = token("bob").split(".")
    with pytest.raises(DecisionRefused, match="signature:"):
        judge(DecisionInput(token=f"{payload}.{token('alice').split('.')[1]}"), view(RiskTier.HIGH))
    assert signature


def test_a_token_is_used_once() -> None:
    t = token("bob")
    nonce = judge(DecisionInput(token=t), view(RiskTier.HIGH)).nonce
    with pytest.raises(DecisionRefused, match="nonce:"):
        judge(DecisionInput(token=t), view(RiskTier.HIGH), nonces=frozenset({nonce}))


def test_a_token_signed_by_someone_else_than_named() -> None:
    with pytest.raises(DecisionRefused, match="signed by bob, not alice"):
        judge(DecisionInput(approver="alice", token=token("bob")), view(RiskTier.HIGH))


# --- quorum, ceilings, auto approval ---------------------------------------------------------


def test_quorum_counts_people_and_owner_and_groups() -> None:
    gov = governance()
    assert gate.quorum([], gov, RiskTier.LOW, False) == (False, "1 more approval(s) (0/1)")
    bob = record("bob", ["payments"])
    assert gate.quorum([bob, bob], gov, RiskTier.HIGH, False) == (False, "1 more approval(s) (1/2)")
    assert gate.quorum(
        [record("alice", ["sre"]), record("carol", ["security"])], gov, RiskTier.HIGH, False
    ) == (
        False,
        "an approval from the owning group payments",
    )
    assert gate.quorum([bob, record("alice", ["sre"])], gov, RiskTier.HIGH, False)[0]
    assert gate.quorum([record("alice", ["sre"]), bob], gov, RiskTier.CRITICAL, False)[1] == (
        "an approval from security"
    )
    assert gate.quorum([record("alice", ["sre"])], gov, RiskTier.LOW, True)[1] == (
        "an approval from emergency (freeze in force)"
    )


def test_only_decisions_on_the_plan_in_force_count() -> None:
    old = record("bob", ["payments"]).model_copy(update={"plan_hash": "plan-0"})
    assert gate.current([old, record("alice", ["sre"])], PLAN) == [record("alice", ["sre"])]
    assert gate.rejected([record("carol", ["security"], DecisionKind.REJECT)])
    assert not gate.rejected([record("carol", ["security"])])


def test_the_recommenders_ceiling() -> None:
    gov = governance(recommender_max_tier=RiskTier.MEDIUM)
    assert gate.ceiling_refusal("triage-bot", RiskTier.MEDIUM, gov) is None
    assert gate.ceiling_refusal("triage-bot", RiskTier.HIGH, gov) == (
        "security: triage-bot may propose up to medium risk; this is high"
    )
    assert gate.ceiling_refusal("triage-bot", RiskTier.CRITICAL, governance()) is None


def test_auto_approval_only_within_its_limits() -> None:
    gov = governance(mode=Mode.AUTO, auto_max_tier=RiskTier.MEDIUM, auto_min_confidence=0.9)
    assert gate.auto_approval(RiskTier.LOW, 0.95, gov, False) is not None
    assert gate.auto_approval(RiskTier.MEDIUM, 0.95, gov, False) is not None
    assert gate.auto_approval(RiskTier.LOW, 0.5, gov, False) is None  # confidence
    assert gate.auto_approval(RiskTier.LOW, 0.95, gov, True) is None  # freeze
    never = governance(auto_max_tier=RiskTier.CRITICAL)
    assert gate.auto_approval(RiskTier.HIGH, 1.0, never, False) is None  # high never, whatever it says


# --- decisions carried into a continued run ------------------------------------------------------


def test_carried_decisions_are_judged_again_not_adopted() -> None:
    signed_bob = record("bob", ["payments"], signed=True, token=token("bob"), reason="checked")
    kept, dropped, nonces = gate.recheck_carried([signed_bob], view(RiskTier.HIGH), 0.8)
    assert [d.approver for d in kept] == ["bob"] and not dropped and len(nonces) == 1

    forged = [
        record("mallory", ["payments"], signed=True, token=token("bob")),  # someone else's token
        record("alice", ["sre"], signed=True),  # "signed" with no token
        record("carol", ["security"]),  # unsigned, where high needs a signature
        record(AUTO_APPROVER, [], human=False),  # the policy would not approve high on its own
    ]
    kept, dropped, _ = gate.recheck_carried(forged, view(RiskTier.HIGH), 0.99)
    assert kept == []
    assert len(dropped) == 4
    assert "signed by bob, not mallory" in dropped[0]
    assert "carries no token" in dropped[1]
    assert "unsigned approvals are not accepted" in dropped[2]
    assert "would not approve" in dropped[3]


def test_a_carried_token_replayed_twice_counts_once() -> None:
    t = token("bob")
    twice = [record("bob", ["payments"], signed=True, token=t, reason="checked")] * 2
    kept, dropped, _ = gate.recheck_carried(twice, view(RiskTier.HIGH), 0.8)
    assert len(kept) == 1 and len(dropped) == 1


def test_carried_groups_come_from_the_roster_in_force() -> None:
    claims_security = record("alice", ["security", "payments"])
    kept, _, _ = gate.recheck_carried([claims_security], view(RiskTier.LOW), 0.8)
    assert kept[0].groups == ["sre"]


# --- clocks, escalation, pauses, the decision window, duplicates, unresolved evidence ------------


def test_t2_is_the_actions_timeout_else_the_tiers() -> None:
    gov = governance()
    assert gate.expire_after(gov, RiskTier.LOW, None) == gov.rules[RiskTier.LOW].expire_after
    assert gate.expire_after(gov, RiskTier.LOW, 90.0) == timedelta(seconds=90)


def test_escalation_goes_to_the_tiers_group_else_the_owners() -> None:
    gov = governance()
    assert gate.escalation_group(gov, RiskTier.LOW) == "payments"
    gov.rules[RiskTier.HIGH] = gov.rules[RiskTier.HIGH].model_copy(update={"escalation_group": "security"})
    assert gate.escalation_group(gov, RiskTier.HIGH) == "security"


def test_a_pause_holds_what_its_scope_covers() -> None:
    from interlock.models import Pause, PauseScope

    pauses = [
        Pause(scope=PauseScope(service="storefront"), reason="x", by="ops", at=NOW),
        Pause(scope=PauseScope(action="restart_service"), reason="y", by="ops", at=NOW),
    ]
    held = gate.active_pauses(pauses, "restart_service", "triage-bot", "checkout-api")
    assert [p.reason for p in held] == ["y"]
    assert gate.active_pauses(pauses, "change_access", "triage-bot", "checkout-api") == []


def test_decisions_are_taken_only_while_waiting() -> None:
    from interlock.models import ProposalStatus

    approve, reject = DecisionKind.APPROVE, DecisionKind.REJECT
    assert gate.decision_window_refusal(approve, ProposalStatus.AWAITING_APPROVAL, False) is None
    assert gate.decision_window_refusal(reject, ProposalStatus.PAUSED, False) is None
    assert gate.decision_window_refusal(approve, ProposalStatus.PAUSED, False) == (
        "proposal is paused, not awaiting_approval"
    )
    assert gate.decision_window_refusal(approve, None, False) == "proposal is starting, not awaiting_approval"
    assert gate.decision_window_refusal(approve, ProposalStatus.AWAITING_APPROVAL, True) == (
        "proposal is being cancelled"
    )


def test_a_duplicate_must_carry_the_owners_key() -> None:
    from interlock.governance import Assessment

    same = Assessment(ok=True, reasons=[], policy_version="v", dedup_key="k")
    assert gate.duplicate_refusal("k", same) is None
    assert "dedup key" in (gate.duplicate_refusal("k", same.model_copy(update={"dedup_key": "other"})) or "")
    assert "dedup key" in (gate.duplicate_refusal(None, same) or "")
    scoped = same.model_copy(update={"security_violation": True})
    assert gate.duplicate_refusal("k", scoped) == "duplicate refused: security violation"


def test_evidence_that_still_holds_or_cannot_be_read_is_unresolved() -> None:
    from interlock.models import EvidenceCheck, EvidenceReport

    def item(ref: str, *, fetched: bool, supports: bool) -> EvidenceCheck:
        return EvidenceCheck(
            source="am", ref=ref, ok=False, reason=f"{ref} says so", fetched=fetched, supports=supports
        )

    report = EvidenceReport(
        ok=False,
        checked_at=NOW,
        items=[
            item("cleared", fetched=True, supports=False),
            item("firing", fetched=True, supports=True),
            item("silenced", fetched=False, supports=False),
        ],
    )
    assert gate.not_cleared(report, 120) == [
        "not resolved within 120s: am firing: firing says so",
        "not resolved within 120s: am silenced: could not re-read: silenced says so",
    ]


def test_audit_ids_and_headlines_are_stable() -> None:
    assert gate.audit_event_id("p-1", "run-9", 3, "final") == "p-1/run-9/3/final"
    assert gate.headline("restart_service", "checkout-api", "lab", "triage-bot", RiskTier.LOW) == (
        "restart_service on checkout-api (lab, low risk) from triage-bot"
    )
    assert gate.headline("restart_service", "checkout-api", "lab", "triage-bot", None) == (
        "restart_service on checkout-api (lab) from triage-bot"
    )

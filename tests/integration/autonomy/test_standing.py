"""Standings against the real audit store: a clean record promotes exactly once, a rollback
beyond the threshold demotes, a new model version starts in shadow, and the checks activity
gives the next proposal the mode earned. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.activities.checks import ProposalChecks
from interlock.audit.events import AuditEventIn, EventKind
from interlock.audit.metrics import mode_changes
from interlock.audit.standing import evaluate_graduation, judged
from interlock.audit.store import AuditStore
from interlock.autonomy import GraduationInput
from interlock.governance import Governance
from interlock.policy import Mode, Policy, default_policy_text, parse_policy
from interlock.settings import Settings
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import T0
from tests.support import make_proposal

GRADUATION = {
    "action": "restart_service",
    "window": "7d",
    "promote": {
        "approve": {"min_proposals": 3, "max_false_recommendation_rate": 0.34},
        "auto": {"min_proposals": 20, "max_false_recommendation_rate": 0.05},
    },
    "demote": {"min_proposals": 1, "max_rollback_rate": 0.2},
}


def policy_with(modes: list[dict[str, Any]] | None = None) -> Policy:
    doc = yaml.safe_load(default_policy_text())
    doc["graduation"] = [GRADUATION]
    doc["modes"] = modes or []
    return parse_policy(yaml.safe_dump(doc))


class Pilot:
    """Finishes proposals in the store as the workflow records them, and judges after each."""

    def __init__(self, store: AuditStore, policy: Policy, model: str = "demo-1"):
        self.store, self.policy, self.model, self.n = store, policy, model, 0

    def finish(self, status: str, human: str | None = None) -> list[Any]:
        pid, end = self.record(status, human)
        return evaluate_graduation(self.store, self.policy, self.input(pid, status, end))

    def record(self, status: str, human: str | None = None, minutes: float | None = None) -> tuple[str, Any]:
        self.n += 1
        pid = f"{self.model}-{self.n:03d}"
        at = T0 + timedelta(minutes=minutes if minutes is not None else 10 * self.n)
        common = dict(proposal_id=pid, recommender="demo", model_version=self.model,
                      action="restart_service", service="checkout-api")  # fmt: skip
        data = {
            "proposal": {
                "incident": f"INC-{pid}",
                "target": {"service": "checkout-api", "environment": "lab"},
            }
        }
        events = [
            AuditEventIn(
                event_id=f"{pid}/r/1/submitted", kind=EventKind.SUBMITTED, at=at, data=data, **common
            )
        ]
        if human is not None:
            decision = {"decision": human, "approver": "alice", "reason": "", "signed": False, "human": True}
            events.append(AuditEventIn(event_id=f"{pid}/r/2/decision", kind=EventKind.DECISION,
                                       at=at + timedelta(seconds=30), data=decision, **common))  # fmt: skip
        end = at + timedelta(minutes=2)
        events.append(
            AuditEventIn(event_id=f"{pid}/r/3/final", kind=EventKind.FINAL, at=end, status=status, **common)
        )
        self.store.append_many(events)
        return pid, end

    def input(self, pid: str, status: str, at: Any) -> GraduationInput:
        return GraduationInput(proposal_id=pid, recommender="demo", model_version=self.model,
                               action="restart_service", service="checkout-api", environment="lab",
                               status=status, at=at)  # fmt: skip

    def mode(self) -> Mode:
        found = judged(
            self.store, self.policy, "demo", self.model, "restart_service", "lab", "checkout-api", T0
        )
        assert found is not None
        return found[1].mode


def test_a_clean_record_promotes_exactly_once_then_a_rollback_demotes(store: AuditStore) -> None:
    pilot = Pilot(store, policy_with())
    assert pilot.mode() is Mode.SHADOW  # a new model version
    assert pilot.finish("shadowed") == [] and pilot.finish("shadowed") == []
    [change] = pilot.finish("shadowed")
    assert (change.from_mode, change.to_mode, change.direction) == (Mode.SHADOW, Mode.APPROVE, "promoted")
    assert pilot.mode() is Mode.APPROVE
    # More clean finals: the ceiling (the modes rule's `approve`) allows nothing higher.
    for _ in range(4):
        assert pilot.finish("completed", human="approve") == []
    [recorded] = mode_changes(store, "demo", "demo-1")
    assert recorded["data"]["to"] == "approve" and recorded["data"]["figures"]["proposals"] == 3
    assert recorded["data"]["reasons"][0] == "3 final proposal(s) (at least 3)"

    # One rollback in five finals of the stint is 20%: not beyond the threshold. Two are.
    assert pilot.finish("rolled_back", human="approve") == []
    [demotion] = pilot.finish("rolled_back", human="approve")
    assert (demotion.to_mode, demotion.direction) == (Mode.SHADOW, "demoted")
    assert demotion.reasons == ["rollback rate 33.3% > 20% over 6 proposal(s)"]
    assert [e["data"]["to"] for e in mode_changes(store, "demo", "demo-1")] == ["approve", "shadow"]
    assert pilot.mode() is Mode.SHADOW


def test_a_preview_that_never_reached_a_host_counts_for_nothing(store: AuditStore) -> None:
    pilot = Pilot(store, policy_with())
    # preview_failed judged nothing: however many, no promotion (3 finals are needed) ...
    for _ in range(5):
        assert pilot.finish("preview_failed") == []
    assert pilot.mode() is Mode.SHADOW
    # ... and once there are 3 judged finals, the figures count those only.
    pilot.finish("shadowed"), pilot.finish("shadowed")
    [change] = pilot.finish("shadowed")
    assert change.to_mode is Mode.APPROVE and change.figures["proposals"] == 3


def test_a_new_model_version_starts_in_shadow(store: AuditStore) -> None:
    old = Pilot(store, policy_with())
    for _ in range(3):
        old.finish("shadowed")
    assert old.mode() is Mode.APPROVE
    assert Pilot(store, policy_with(), model="demo-2").mode() is Mode.SHADOW


def test_concurrent_evaluations_record_one_change(store: AuditStore) -> None:
    pilot = Pilot(store, policy_with())
    for _ in range(2):
        pilot.finish("shadowed")
    # The third final is recorded; several evaluations of it race (retries, other proposals).
    pid, _ = pilot.record("shadowed")
    results: list[list[Any]] = []
    times = [T0 + timedelta(minutes=32, seconds=s) for s in range(4)]

    def judge(at: Any) -> None:
        results.append(evaluate_graduation(store, pilot.policy, pilot.input(pid, "shadowed", at)))

    threads = [threading.Thread(target=judge, args=(t,)) for t in times]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r) for r in results) == 1
    assert [e["data"]["to"] for e in mode_changes(store, "demo", "demo-1")] == ["approve"]


async def test_the_checks_give_the_next_proposal_the_mode_earned(
    store: AuditStore, backend: Backend, tmp_path: Path
) -> None:
    policy = policy_with()
    settings = Settings(home=tmp_path, database_url=backend.url)
    checks = ProposalChecks(settings)
    proposal = make_proposal(Settings(home=tmp_path), "restart_service").model_copy(
        update={"recommender": "demo", "model_version": "demo-1"}
    )
    gov = Governance.from_policy(policy, "restart_service", "lab", "checkout-api", "demo", T0)
    try:
        assert (await checks.earned(gov, policy, proposal, "checkout-api")).mode is Mode.SHADOW
        pilot = Pilot(store, policy)
        for _ in range(3):
            pilot.finish("shadowed")
        assert (await checks.earned(gov, policy, proposal, "checkout-api")).mode is Mode.APPROVE
        # Without graduation rules the policy's mode stands, and the store is not even opened.
        plain = ProposalChecks(
            Settings(home=tmp_path / "none", database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
        )
        no_rules = parse_policy(default_policy_text())
        assert (await plain.earned(gov, no_rules, proposal, "checkout-api")).mode is Mode.APPROVE
        # A store that cannot be read gives no autonomy.
        broken = await plain.earned(gov, policy, proposal, "checkout-api")
        assert broken.mode is Mode.SHADOW
    finally:
        await checks.aclose()


@pytest.mark.parametrize("ceiling", ["auto"])
def test_auto_is_earned_only_under_an_auto_ceiling(store: AuditStore, ceiling: str) -> None:
    policy = policy_with([{"action": "restart_service", "mode": ceiling, "max_tier": "low"}])
    pilot = Pilot(store, policy)
    for _ in range(3):
        pilot.finish("shadowed")
    assert pilot.mode() is Mode.APPROVE
    changes = [c for _ in range(20) for c in pilot.finish("completed", human="approve")]
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.APPROVE, Mode.AUTO)]

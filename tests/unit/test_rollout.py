"""Rolling execution's pure rules, the `hosts` risk factor and the catalog's hosts: no server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from interlock.models import BatchResult, BatchStatus, PlaybookResult, RolloutPlan, Stage, TaskResult
from interlock.policy import RiskSettings, parse_policy, validate_against_policy
from interlock.risk import RiskInput, score_risk
from interlock.rollout import (
    batch_size,
    fleet_plan_hash,
    host_results,
    hosts_to_roll_back,
    make_batches,
    previewed_hosts,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WEB = ["web-1", "web-2", "web-3"]


@pytest.mark.parametrize(
    ("batch", "total", "size"),
    [
        (1, 3, 1),
        (2, 3, 2),
        (5, 3, 3),
        ("25%", 3, 1),
        ("25%", 8, 2),
        ("50%", 3, 2),
        ("100%", 3, 3),
        ("1%", 200, 2),
    ],
)
def test_batch_size(batch: int | str, total: int, size: int) -> None:
    assert batch_size(batch, total) == size


def test_batches_keep_the_order() -> None:
    assert make_batches(WEB, 1) == [["web-1"], ["web-2"], ["web-3"]]
    assert make_batches(WEB, "50%") == [["web-1", "web-2"], ["web-3"]]
    assert make_batches([], 1) == []


def task(host: str, status: str, name: str = "Restart", msg: str | None = None) -> TaskResult:
    return TaskResult(host=host, task=name, status=status, changed=status == "changed", msg=msg)


def result(
    tasks: list[TaskResult], ok: bool, stage: Stage = Stage.EXECUTE, error: str | None = None
) -> PlaybookResult:
    return PlaybookResult(
        stage=stage, playbook="p.yml", status="successful" if ok else "failed", rc=0 if ok else 2,
        ok=ok, tasks=tasks, started_at=NOW, finished_at=NOW, error=error,
    )  # fmt: skip


def test_previewed_hosts_in_catalog_order_then_the_rest() -> None:
    tasks = [task("web-3", "ok"), task("web-1", "changed"), task("db-9", "ok")]
    assert previewed_hosts(tasks, WEB) == ["web-1", "web-3", "db-9"]


def test_each_host_result_names_its_host() -> None:
    run = result([task("web-1", "changed"), task("web-2", "failed", msg="503")], ok=False)
    by_host = {r.host: r for r in host_results(run, ["web-1", "web-2", "web-3"])}
    assert by_host["web-1"].status == "failed" and "web-1" in (by_host["web-1"].reason or "")
    assert by_host["web-2"].reason == "task 'Restart' failed on web-2: 503"
    # Never reported on: failed with the run's own error, still named.
    assert by_host["web-3"].status == "failed"


def test_only_the_hosts_the_change_reached_are_rolled_back() -> None:
    done = BatchResult(index=0, hosts=["web-1"], status=BatchStatus.SUCCEEDED, execution=result([], ok=True))
    half = BatchResult(
        index=1,
        hosts=["web-2", "web-3"],
        status=BatchStatus.FAILED,
        execution=result([task("web-2", "changed"), task("web-3", "ok")], ok=False),
    )
    never = BatchResult(index=2, hosts=["web-4"], status=BatchStatus.NOT_RUN)
    assert hosts_to_roll_back(done) == ["web-1"]
    assert hosts_to_roll_back(half) == ["web-2"]
    assert hosts_to_roll_back(never) == []


def test_the_plan_hash_binds_hosts_and_batches() -> None:
    base = "0" * 64
    one = result([task("web-1", "changed")], ok=True, stage=Stage.PREVIEW)
    one.plan = RolloutPlan(hosts=["web-1"], batches=[["web-1"]])
    other = one.model_copy(update={"tasks": [task("web-2", "changed")]})
    rebatched = one.model_copy(
        update={"plan": RolloutPlan(hosts=["web-1"], batches=[["web-1"]], max_failed=1)}
    )
    hashes = {fleet_plan_hash(base, p) for p in (one, other, rebatched)}
    assert len(hashes) == 3


def facts(**kw: object) -> RiskInput:
    base = dict(
        action="restart_service", base_risk=5, environment="lab", environment_risk=0,
        service="checkout-api", dependents=[], confidence=1.0, evidence_total=2, evidence_confirmed=2,
    )  # fmt: skip
    return RiskInput.model_validate(base | kw)


@pytest.mark.parametrize(
    ("changing", "fleet", "points", "detail"),
    [
        (None, 0, None, None),
        ([], 3, 0, "no host of checkout-api changing"),
        (["web-1"], 3, 3, "1 of 3 host(s) of checkout-api changing (33% of the fleet): web-1"),
        (["web-1", "web-2", "web-3"], 3, 12, "3 of 3 host(s) of checkout-api changing (100% of the fleet)"),
        (["web-1"], 1, 10, "1 of 1 host(s)"),
    ],
)
def test_hosts_factor(changing: list[str] | None, fleet: int, points: int | None, detail: str | None) -> None:
    risk = score_risk(facts(hosts_changing=changing, fleet_size=fleet), RiskSettings())
    found = [f for f in risk.factors if f.name == "hosts"]
    if points is None:
        assert found == []  # before a preview: no factor at all
        return
    assert found[0].contribution == points
    assert detail in found[0].detail


POLICY = """
groups: [sre, security, emergency]
services:
  checkout-api:
    owner: sre
    environments: [lab]
    hosts: {lab: [web-1, web-2, web-3]}
sources:
  mon: {kind: http-health, url: lab://monitor, checks: {unhealthy: {path: /h}}}
actions:
  restart_service:
    owner: sre
    base_risk: 5
    playbooks: {run: r.yml, verify: v.yml, rollback: b.yml}
    evidence_sources: {mon: {checks: [unhealthy]}}
    rollout: {batch: 1, max_failed: 0, pause: 1s}
    timeouts: {execute: 2m}
roster: {alice: {groups: [sre]}}
"""


def test_target_hosts_are_checked_against_the_catalog() -> None:
    from interlock.examples import example_proposal
    from interlock.models import Proposal

    policy = parse_policy(POLICY)
    assert policy.actions["restart_service"].rollout is not None
    doc = example_proposal("restart_service", "p-1", "checkout-api", {})
    doc["evidence"] = [{"source": "mon", "ref": "unhealthy", "observed_at": NOW.isoformat()}]
    doc["target"]["hosts"] = ["web-2", "db-1"]
    proposal = Proposal.model_validate(doc, strict=False)
    errors = validate_against_policy(proposal, policy)
    assert errors == [
        "target.hosts: 'db-1' is not a host of checkout-api in 'lab' (hosts: web-1, web-2, web-3)"
    ]
    doc["target"]["hosts"] = ["web-2"]
    assert validate_against_policy(Proposal.model_validate(doc, strict=False), policy) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("rollout: {batch: 0}", "batch: at least 1 host"),
        ("rollout: {batch: '150%'}", "neither a number of hosts nor a share"),
        ("rollout: {batch: 1, max_failed: -1}", "max_failed"),
    ],
)
def test_bad_rollout_settings_are_refused(change: str, error: str) -> None:
    from interlock.policy import PolicyError

    text = POLICY.replace("rollout: {batch: 1, max_failed: 0, pause: 1s}", change)
    with pytest.raises(PolicyError, match=error):
        parse_policy(text)


def test_a_host_that_is_a_pattern_is_refused() -> None:
    from interlock.policy import PolicyError

    with pytest.raises(PolicyError, match="not a safe inventory name"):
        parse_policy(POLICY.replace("[web-1, web-2, web-3]", "['web-*', 'all:!db']"))


def test_an_unreachable_host_is_an_infrastructure_failure_naming_it() -> None:
    from interlock.rollout import infrastructure_failure

    def result(rc: int, *tasks: tuple[str, str, str]) -> PlaybookResult:
        return PlaybookResult(
            stage=Stage.PREVIEW, playbook="r.yml", status="failed", rc=rc, ok=False,
            tasks=[TaskResult(host=h, task="Restart", status=s, msg=m) for h, s, m in tasks],
            started_at=NOW, finished_at=NOW, error="task failed",
        )  # fmt: skip

    failed = result(
        4,
        ("web-1", "ok", ""),
        ("web-2", "unreachable", "Failed to connect to the host via ssh: Permission denied (publickey)."),
    )
    assert infrastructure_failure(failed) == (
        "unreachable: web-2: Failed to connect to the host via ssh: Permission denied (publickey)."
    )
    assert infrastructure_failure(result(4)) == "ansible-playbook rc 4 (hosts unreachable): task failed"
    # A playbook that ran and refused the change is the preview's verdict, not infrastructure.
    assert infrastructure_failure(result(2, ("web-1", "failed", "assert failed"))) is None


def test_a_rolled_back_batch_shows_each_host_where_it_ended_but_keeps_the_failure() -> None:
    from interlock.models import HostResult, Stage
    from interlock.rollout import after_rollback

    forward = [
        HostResult(host="web-1", stage=Stage.EXECUTE, status="changed", changed=True),
        HostResult(host="web-2", stage=Stage.VERIFY, status="failed", reason="web-2 answered 503"),
    ]
    verified = [
        HostResult(host="web-1", stage=Stage.VERIFY_ROLLBACK, status="ok"),
        HostResult(host="web-2", stage=Stage.VERIFY_ROLLBACK, status="ok"),
    ]
    shown = after_rollback(forward, verified)
    assert [(r.host, r.stage, r.status) for r in shown] == [
        ("web-1", Stage.VERIFY_ROLLBACK, "ok"),
        ("web-2", Stage.VERIFY, "failed"),
    ]
    assert shown[1].reason == "web-2 answered 503"

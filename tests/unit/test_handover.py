"""StageSplit: one Ansible run's events cut into the change, the hand-over and the check, each
stage's status judged as if it had run alone (ansible-runner's event shapes, no Ansible here;
tests/integration/fleet/test_one_run.py runs the real thing over SSH)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interlock.activities.handover import StageSplit
from interlock.models import Stage
from interlock.policy import load_policy


def split(tmp_path: Path, stage: Stage = Stage.EXECUTE, handed: Any = None) -> StageSplit:
    action = load_policy(None).actions["restart_service"]  # facts: previous_pid, pid (nullable ints)
    return StageSplit(
        stage=stage,
        action=action,
        handed=handed,
        handover=tmp_path / "handover.json",
        nonce="n1",
        deadlines=[60.0, 60.0],
    )


def play(name: str) -> dict[str, Any]:
    return {"event": "playbook_on_play_start", "event_data": {"name": name, "play": name}}


def task(
    host: str, kind: str = "runner_on_ok", name: str = "t", stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    res: dict[str, Any] = {"changed": False}
    if stats is not None:
        res["ansible_stats"] = {"data": stats, "per_host": True, "aggregate": False}
    return {"event": kind, "event_data": {"host": host, "task": name, "res": res}}


def facts(pid: int) -> dict[str, Any]:
    return {"previous_pid": pid, "pid": pid + 1}


def feed(s: StageSplit, events: list[dict[str, Any]]) -> None:
    for e in events:
        s.see(e)


def test_the_stages_are_cut_at_the_hand_over_and_the_checked_facts_handed_over(tmp_path: Path) -> None:
    s = split(tmp_path)
    feed(s, [play("Restart"), task("web-1", stats=facts(10)), task("web-2", stats=facts(20))])
    assert not s.handover.exists()
    feed(s, [play(s.marker)])
    # Written the moment the hand-over starts, before its tasks run: each host's own facts.
    doc = json.loads(s.handover.read_text())
    assert doc == {"facts": {"web-1": facts(10), "web-2": facts(20)}, "refused": {}}
    assert s.handover.stat().st_mode & 0o777 == 0o600
    feed(
        s,
        [
            task("web-1", name="interlock: facts for verify"),
            task("web-2", name="interlock: facts for verify"),
        ],
    )
    feed(s, [play("Verify"), task("web-1", name="check"), task("web-2", name="check")])
    assert [len(p) for p in s.parts] == [3, 3, 3]
    assert s.current() is Stage.VERIFY
    outcome = s.outcome("successful", 0)
    assert (outcome.first_status, outcome.first_rc, outcome.second_status) == ("successful", 0, "successful")
    assert s.outcome("failed", 2).second_status == "failed"  # a host failed the check


def test_a_host_the_change_failed_on_fails_the_change_and_no_check_is_reported(tmp_path: Path) -> None:
    s = split(tmp_path)
    feed(s, [play("Restart"), task("web-1", stats=facts(10)), task("web-2", "runner_on_failed")])
    feed(s, [play(s.marker), task("web-1", name="interlock: facts for verify")])
    feed(s, [play("Verify"), task("web-1", name="check")])
    outcome = s.outcome("failed", 2)
    assert (outcome.first_status, outcome.first_rc, outcome.second_status) == ("failed", 2, None)


def test_a_failure_the_playbook_rescued_does_not_fail_the_change(tmp_path: Path) -> None:
    # Ansible's own verdict: a host that reached the hand-over succeeded, whatever failed on the way.
    s = split(tmp_path)
    feed(
        s, [play("Restart"), task("web-1", "runner_on_failed"), task("web-1", name="rescue", stats=facts(1))]
    )
    feed(
        s, [play(s.marker), task("web-1", name="interlock: facts for verify"), play("Verify"), task("web-1")]
    )
    assert s.outcome("successful", 0).first_status == "successful"


def test_refused_facts_are_named_per_host_and_judged_by_the_change_itself(tmp_path: Path) -> None:
    s = split(tmp_path)
    feed(
        s,
        [
            play("Restart"),
            task("web-1", stats={"previous_pid": "12; rm -rf /", "pid": 2}),
            task("web-2", stats=facts(5)),
        ],
    )
    feed(s, [play(s.marker)])
    doc = json.loads(s.handover.read_text())
    assert set(doc["refused"]) == {"web-1"} and doc["refused"]["web-1"].startswith(
        "declared facts refused: web-1: "
    )
    assert doc["facts"] == {"web-2": facts(5)}
    feed(s, [task("web-1", "runner_on_failed", name="interlock: facts for verify"), task("web-2", name="x")])
    outcome = s.outcome("failed", 2)
    # The change's own result (strict facts) says facts_refused; the check is not reported.
    assert (outcome.first_status, outcome.first_rc, outcome.second_status) == ("successful", 0, None)
    assert [e["event"] for e in s.change_events()][-1] == "runner_on_failed"


def test_a_run_stopped_before_the_hand_over_stops_the_change_only(tmp_path: Path) -> None:
    s = split(tmp_path)
    feed(s, [play("Restart"), task("web-1")])
    assert s.outcome("canceled", 254).first_status == "canceled"
    assert s.outcome("timeout", 254).second_status is None
    # A play that never reaches the hand-over and says successful still did not finish the change.
    assert s.outcome("successful", 0).first_status == "failed"


def test_a_stage_past_its_own_deadline_is_stopped_as_a_timeout(tmp_path: Path) -> None:
    s = split(tmp_path)
    s.deadlines = [60.0, 0.0]
    feed(s, [play("Restart"), task("web-1", stats=facts(1))])
    assert not s.overdue()
    feed(s, [play(s.marker), task("web-1", name="interlock: facts for verify"), play("Verify")])
    assert s.overdue() and s.overdue_stage is Stage.VERIFY
    outcome = s.outcome("canceled", 254)
    assert (outcome.first_status, outcome.second_status) == ("successful", "timeout")


def test_a_rollback_hands_its_check_the_facts_it_was_handed(tmp_path: Path) -> None:
    handed = {"web-1": facts(7)}
    s = split(tmp_path, Stage.ROLLBACK, handed)
    feed(s, [play("Roll back"), task("web-1"), play(s.marker)])
    assert json.loads(s.handover.read_text()) == {"facts": handed, "refused": {}}
    assert s.then is Stage.VERIFY_ROLLBACK


def test_a_hand_over_that_fails_for_another_reason_fails_the_change(tmp_path: Path) -> None:
    s = split(tmp_path)
    feed(s, [play("Restart"), task("web-1", stats=facts(1)), play(s.marker)])
    feed(s, [task("web-1", "runner_on_failed", name="interlock: facts for verify")])
    outcome = s.outcome("failed", 2)
    assert (outcome.first_status, outcome.second_status) == ("failed", None)
    assert s.change_events()[-1]["event_data"]["task"] == "interlock: facts for verify"


def test_a_playbook_pty_is_closed_without_the_sleep_after_its_process_exited() -> None:
    import pexpect

    import interlock.activities.ansible  # noqa: F401 - the worker imports it before any run

    child = pexpect.spawn("true")
    child.expect(pexpect.EOF)
    assert child.ptyproc.delayafterclose == 0.0
    child.close()
    assert child.exitstatus == 0

"""Real ansible-runner runs of every playbook against a real lab, in run and check mode."""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.lab import Lab
from tests.integration.lab.support import changes
from tests.integration.playbooks.support import PLAYBOOKS, RunPlaybook, unsafe_extravars

REJECTED = "Validate the change request"


def change_id() -> str:
    return f"chg-{uuid.uuid4().hex[:12]}"


# Facts a run playbook reports; verify and rollback read them per host from interlock_facts.
FACTS = ("previous_pid", "previous_release", "previous_member")


def extravars(lab: Lab, cid: str, **values: Any) -> dict[str, Any]:
    """Extra vars as Interlock passes them: facts go in `interlock_facts`, keyed by host."""
    facts = {name: values.pop(name) for name in FACTS if name in values}
    handed = {"interlock_facts": {"localhost": facts}} if facts else {}
    return {"lab_root": str(lab.root), "interlock_change_id": cid, **values, **handed}


def snapshot(lab: Lab) -> dict[str, Any]:
    """Everything a playbook could change, to prove a run changed nothing."""
    services = lab.root / "services"
    return {
        "pids": {n: s["pid"] for n, s in lab.status()["services"].items()},
        "links": {p.name: os.readlink(p / "current") for p in sorted(services.iterdir())},
        "access": {p.name: p.read_text() for p in sorted((lab.root / "access").iterdir())},
        "changes": lab.paths.changes.read_text(),
        "records": sorted(p.name for p in lab.paths.change_records.iterdir()),
    }


def restarts(lab: Lab, key_prefix: str) -> list[dict[str, Any]]:
    return [c for c in changes(lab) if c["event"] == "restart" and c["key"].startswith(key_prefix)]


def test_restart_changes_the_pid_and_verify_passes(lab: Lab, run_playbook: RunPlaybook) -> None:
    before = lab.status()["services"]["checkout-api"]["pid"]
    cid = change_id()

    run = run_playbook("restart_service.yml", extravars(lab, cid, service="checkout-api"))

    assert (run.status, run.rc) == ("successful", 0)
    after = lab.status()["services"]["checkout-api"]
    assert after["healthy"] and after["pid"] != before
    # set_stats arrive per host, in the host's own set_stats task result.
    assert run.stats == {"service": "checkout-api", "previous_pid": before, "pid": after["pid"]}
    assert run.changed_tasks()["Restart the lab service once per change"]["diff"] == {
        "before": f"pid {before} running\n",
        "after": f"pid {after['pid']} running (restarted)\n",
    }

    verify = run_playbook(
        "restart_service_verify.yml",
        extravars(lab, cid, service="checkout-api", previous_pid=str(run.stats["previous_pid"])),
    )
    assert verify.status == "successful", verify.failed_task()
    assert verify.stats == {"health_status": 200, "pid": after["pid"], "version": "v2"}


def test_two_changes_of_one_service_at_once_both_restart_it(lab: Lab, run_playbook: RunPlaybook) -> None:
    # Two proposals (or two workers) restarting one service at the same moment: the module
    # serializes them on the service, as a service manager would, instead of racing for its port.
    first, second = change_id(), change_id()
    with ThreadPoolExecutor(2) as pool:
        runs = list(
            pool.map(
                lambda cid: run_playbook("restart_service.yml", extravars(lab, cid, service="inventory-api")),
                [first, second],
            )
        )

    assert [(r.status, r.rc) for r in runs] == [("successful", 0)] * 2, [r.failed_task() for r in runs]
    done = restarts(lab, first) + restarts(lab, second)
    assert len(done) == 2
    # One after the other: the second stopped the process the first started.
    pids = {r.stats["pid"] for r in runs}
    assert len(pids) == 2
    assert {c["previous_pid"] for c in done} & pids, done
    assert lab.status()["services"]["inventory-api"]["healthy"]


def test_the_same_change_id_restarts_once(lab: Lab, run_playbook: RunPlaybook) -> None:
    cid = change_id()
    first = run_playbook("restart_service.yml", extravars(lab, cid, service="inventory-api"))
    again = run_playbook("restart_service.yml", extravars(lab, cid, service="inventory-api"))

    assert first.status == again.status == "successful"
    assert again.changed_tasks() == {}
    # The retry reports what the first run did, so verify still compares the right pids.
    assert again.stats == first.stats
    assert len(restarts(lab, cid)) == 1
    assert lab.status()["services"]["inventory-api"]["pid"] == first.stats["pid"]


def test_a_restart_that_crashed_before_its_record_is_not_repeated(
    lab: Lab, run_playbook: RunPlaybook
) -> None:
    # What a worker killed mid-restart leaves behind: the intent written before the
    # restart, and a new process already serving.
    cid = change_id()
    serving = lab.status()["services"]["checkout-api"]["pid"]
    intent = lab.paths.change_records / f"{cid}.restart_service.restart.checkout-api.localhost.json"
    intent.write_text(json.dumps({"previous_pid": 1, "pid": None}))

    run = run_playbook("restart_service.yml", extravars(lab, cid, service="checkout-api"))

    assert run.status == "successful", run.failed_task()
    assert run.changed_tasks() == {}
    assert run.stats == {"service": "checkout-api", "previous_pid": 1, "pid": serving}
    assert lab.status()["services"]["checkout-api"]["pid"] == serving
    assert restarts(lab, cid) == []


def test_restart_rollback_brings_a_stopped_service_back(lab: Lab, run_playbook: RunPlaybook) -> None:
    cid = change_id()
    stop = run_playbook("restart_service.yml", extravars(lab, cid, service="checkout-api"))
    assert stop.status == "successful"
    os.kill(stop.stats["pid"], 9)

    rollback = run_playbook("restart_service_rollback.yml", extravars(lab, cid, service="checkout-api"))

    assert rollback.status == "successful", rollback.failed_task()
    status = lab.status()["services"]["checkout-api"]
    assert status["healthy"] and rollback.stats == {"pid": status["pid"]}
    assert "Start the lab service if it is down" in rollback.changed_tasks()


@pytest.mark.parametrize(
    ("playbook", "values", "expected_stats", "expected_diffs"),
    [
        (
            "restart_service.yml",
            {"service": "checkout-api"},
            {"service": "checkout-api", "previous_pid": "<checkout-api pid>", "pid": None},
            {"Restart the lab service once per change"},
        ),
        (
            "rollback_deployment.yml",
            {"service": "checkout-api", "release": "v1"},
            {
                "service": "checkout-api",
                "release": "v1",
                "previous_release": "v2",
                "previous_pid": "<checkout-api pid>",
                "pid": None,
            },
            {"Point current at the target release", "Restart the lab service once per change"},
        ),
        (
            "change_access.yml",
            {"user": "dana", "group": "payments-oncall", "change": "grant"},
            {"user": "dana", "group": "payments-oncall", "previous_member": False, "member": True},
            {"Grant or revoke the membership"},
        ),
    ],
    ids=["restart_service", "rollback_deployment", "change_access"],
)
def test_check_mode_previews_without_changing_anything(
    lab: Lab,
    run_playbook: RunPlaybook,
    playbook: str,
    values: dict[str, str],
    expected_stats: dict[str, Any],
    expected_diffs: set[str],
) -> None:
    before = snapshot(lab)

    preview = run_playbook(playbook, extravars(lab, change_id(), **values), check=True)

    assert preview.status == "successful", preview.failed_task()
    assert snapshot(lab) == before
    changed = preview.changed_tasks()
    assert set(changed) == expected_diffs
    assert all(res.get("diff") for res in changed.values())
    pid = before["pids"]["checkout-api"]
    assert preview.stats == {k: pid if v == "<checkout-api pid>" else v for k, v in expected_stats.items()}


def test_rollback_to_a_broken_release_fails_verify_and_is_undone(lab: Lab, run_playbook: RunPlaybook) -> None:
    cid = change_id()
    values = {"service": "checkout-api", "release": "v0"}
    run = run_playbook("rollback_deployment.yml", extravars(lab, cid, **values))
    assert run.status == "successful", run.failed_task()
    assert run.stats["previous_release"] == "v2" and run.stats["release"] == "v0"
    status = lab.status()["services"]["checkout-api"]
    assert (status["version"], status["healthy"]) == ("v0", False)

    # Two tries instead of ten: the outcome is the same, ten seconds sooner.
    verify = run_playbook("rollback_deployment_verify.yml", extravars(lab, cid, health_retries=2, **values))
    assert verify.status == "failed"
    assert verify.failed_task() == "Check the release serves healthy"
    # Stats reported before the failing assert still reach the caller.
    assert verify.stats == {"health_status": 503, "pid": status["pid"], "version": "v0"}
    alerts = httpx.get(f"{lab.status()['monitor']['url']}/api/v2/alerts", trust_env=False)
    assert [a["labels"]["alertname"] for a in alerts.json()] == ["HighErrorRate"]

    # A retry of the same change, and a preview of it, still report where it started.
    retry = run_playbook("rollback_deployment.yml", extravars(lab, cid, **values))
    preview = run_playbook("rollback_deployment.yml", extravars(lab, cid, **values), check=True)
    assert retry.stats == run.stats and preview.stats["previous_release"] == "v2"
    assert len(restarts(lab, cid)) == 1

    rollback = run_playbook(
        "rollback_deployment_rollback.yml",
        extravars(lab, cid, service="checkout-api", previous_release=run.stats["previous_release"]),
    )
    assert rollback.status == "successful", rollback.failed_task()
    # After a rollback Interlock verifies with direction "rollback": the release from
    # before the change must serve healthy.
    verify_back = run_playbook(
        "rollback_deployment_verify.yml",
        extravars(lab, cid, interlock_direction="rollback", previous_release="v2", **values),
    )
    assert verify_back.status == "successful", verify_back.failed_task()
    assert verify_back.stats["version"] == "v2"
    status = lab.status()["services"]["checkout-api"]
    assert (status["version"], status["healthy"], status["release"]) == ("v2", True, "v2")


def test_rollback_deployment_refuses_a_missing_release(lab: Lab, run_playbook: RunPlaybook) -> None:
    before = snapshot(lab)
    run = run_playbook(
        "rollback_deployment.yml",
        extravars(lab, change_id(), service="inventory-api", release="v0"),
    )
    assert run.status == "failed"
    assert run.failed_task() == "Check the target release is installed"
    assert snapshot(lab) == before


def test_change_access_grant_verify_and_rollback(lab: Lab, run_playbook: RunPlaybook) -> None:
    cid = change_id()
    grant = {"user": "dana", "group": "payments-oncall", "change": "grant"}
    run = run_playbook("change_access.yml", extravars(lab, cid, **grant))
    assert run.status == "successful", run.failed_task()
    assert run.stats["previous_member"] is False and run.stats["member"] is True
    diffs = run.changed_tasks()["Grant or revoke the membership"]["diff"]
    assert any("dana" in d.get("after", "") for d in diffs)
    assert "dana" in lab.status()["groups"]["payments-oncall"]
    assert run_playbook("change_access_verify.yml", extravars(lab, cid, **grant)).stats == {"member": True}

    retry = run_playbook("change_access.yml", extravars(lab, cid, **grant))
    assert retry.stats["previous_member"] is False and retry.changed_tasks() == {}

    # previous_member comes back as the string the workflow stored it as.
    rollback = run_playbook(
        "change_access_rollback.yml", extravars(lab, cid, previous_member="False", **grant)
    )
    assert rollback.status == "successful", rollback.failed_task()
    assert lab.status()["groups"]["payments-oncall"] == ["lee"]
    forward = run_playbook("change_access_verify.yml", extravars(lab, cid, **grant))
    assert forward.status == "failed" and forward.stats == {"member": False}
    back = run_playbook(
        "change_access_verify.yml",
        extravars(lab, cid, interlock_direction="rollback", previous_member="False", **grant),
    )
    assert back.status == "successful", back.failed_task()


def test_change_access_revoke_and_inverse_rollback(lab: Lab, run_playbook: RunPlaybook) -> None:
    cid = change_id()
    revoke = {"user": "lee", "group": "payments-oncall", "change": "revoke"}
    run = run_playbook("change_access.yml", extravars(lab, cid, **revoke))
    assert run.status == "successful" and run.stats["previous_member"] is True
    assert lab.status()["groups"]["payments-oncall"] == []
    verify = run_playbook("change_access_verify.yml", extravars(lab, cid, **revoke))
    assert verify.status == "successful", verify.failed_task()

    # Without previous_member the rollback applies the inverse change.
    rollback = run_playbook("change_access_rollback.yml", extravars(lab, cid, **revoke))
    assert rollback.status == "successful" and rollback.stats == {"member": True}
    assert lab.status()["groups"]["payments-oncall"] == ["lee"]


def test_change_access_refuses_an_unknown_group(lab: Lab, run_playbook: RunPlaybook) -> None:
    before = snapshot(lab)
    values = {"user": "dana", "group": "payments-oncal", "change": "grant"}
    run = run_playbook("change_access.yml", extravars(lab, change_id(), **values))
    assert run.status == "failed" and run.failed_task() == "Check the group exists"
    assert snapshot(lab) == before


@pytest.mark.parametrize(
    ("playbook", "values"),
    [
        ("restart_service.yml", {"service": "checkout-api; touch {marker}"}),
        ("restart_service.yml", {"service": "$(touch {marker})"}),
        ("restart_service.yml", {"service": "ansible_python_interpreter=/bin/sh"}),
        ("restart_service.yml", {"service": "checkout-api\n"}),
        ("rollback_deployment.yml", {"service": "checkout-api", "release": "../../../{marker}"}),
        (
            "change_access.yml",
            {"user": "dana`touch {marker}`", "group": "payments-oncall", "change": "grant"},
        ),
    ],
)
def test_malformed_values_fail_at_the_assert_and_change_nothing(
    lab: Lab, run_playbook: RunPlaybook, tmp_path: Path, playbook: str, values: dict[str, str]
) -> None:
    marker = tmp_path / "pwned"
    before = snapshot(lab)
    filled = {k: v.replace("{marker}", str(marker)) for k, v in values.items()}

    run = run_playbook(playbook, extravars(lab, change_id(), **filled))

    assert run.status == "failed"
    assert run.failed_task() == REJECTED
    assert snapshot(lab) == before
    assert not marker.exists()


def test_plain_extravars_are_rendered_before_any_assert(
    lab: Lab, run_playbook: RunPlaybook, tmp_path: Path
) -> None:
    """Pins why callers must not pass untrusted strings as plain extra vars.

    Ansible renders Jinja inside extra vars when a task first reads them: the assert
    that rejects the value runs the payload in doing so. If this starts failing,
    Ansible stopped trusting extra vars and the !unsafe wrapping may be dropped.
    """
    marker = tmp_path / "rendered"
    payload = "{{ lookup('ansible.builtin.pipe', 'touch " + str(marker) + "') }}"
    run = run_playbook("restart_service.yml", extravars(lab, change_id(), service=payload))
    assert run.status == "failed" and run.failed_task() == REJECTED
    assert marker.exists()


def test_unsafe_extravars_are_never_rendered(lab: Lab, run_playbook: RunPlaybook, tmp_path: Path) -> None:
    marker = tmp_path / "rendered"
    payload = "{{ lookup('ansible.builtin.pipe', 'touch " + str(marker) + "') }}"
    before = snapshot(lab)
    bad = tmp_path / "bad.yml"
    bad.write_text(unsafe_extravars(extravars(lab, change_id(), service=payload)))

    run = run_playbook("restart_service.yml", extravars_file=bad)

    assert run.status == "failed" and run.failed_task() == REJECTED
    assert not marker.exists()
    assert snapshot(lab) == before

    # The same wrapping leaves good values fully usable.
    good = tmp_path / "good.yml"
    good.write_text(unsafe_extravars(extravars(lab, change_id(), service="checkout-api")))
    ok = run_playbook("restart_service.yml", extravars_file=good)
    assert ok.status == "successful", ok.failed_task()
    assert ok.stats["previous_pid"] == before["pids"]["checkout-api"]


def test_the_playbook_tree_holds_no_per_run_files() -> None:
    # ansible-runner writes env/extravars, env/cmdline... unless suppress_env_files is
    # set; any such file in the tree would leak into every later run.
    assert sorted(p.name for p in (PLAYBOOKS / "env").iterdir()) == ["envvars"]
    assert not (PLAYBOOKS / "artifacts").exists() or not any((PLAYBOOKS / "artifacts").iterdir())

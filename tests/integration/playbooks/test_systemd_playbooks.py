"""The production-grade systemd playbooks (playbooks/systemd/), run with ansible-runner directly
over real SSH against the lab's SSH hosts, as root through `become`, the unit and health URL
from inventory variables.

This machine has no systemd: a TEST DOUBLE of `systemctl` (systemd_double/systemctl) is first
on every SSH session's PATH. Each host keeps its own units in it, and each unit is a real
process serving the health URL, so pids, restarts and health are real; only systemd is not.

Needs Debian's openssh-server: skipped with the reason on a workstation without it, failed on
CI (CI=true), which must have it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from interlock.lab.ssh import SshFleet, SshUnavailable
from tests.integration.playbooks.support import PLAYBOOKS, PlaybookRun

pytestmark = pytest.mark.timeout(300)

SYSTEMD_PLAYBOOKS = PLAYBOOKS / "systemd"
DOUBLE = Path(__file__).parent / "systemd_double" / "systemctl"
HOSTS = ["web-1", "web-2", "web-3"]
UNIT = "checkout-api.service"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class SystemdFleet:
    ssh: SshFleet
    bin_dir: Path
    private_data_dir: Path
    state_dirs: dict[str, Path]

    def systemctl(self, host: str, *args: str) -> str:
        """Ask the host's systemd (the double), as a session on that host would."""
        env = {**os.environ, "SSH_CONNECTION": f"127.0.0.1 1 127.0.0.1 {self.ssh.ports[host]}"}
        done = subprocess.run(
            [sys.executable, str(self.bin_dir / "systemctl"), *args], env=env, capture_output=True, text=True
        )
        return done.stdout.strip()

    def pid(self, host: str) -> int:
        return int(self.systemctl(host, "show", "-p", "MainPID", "--value", UNIT))

    def calls(self, host: str, verb: str) -> int:
        log = self.bin_dir / "hosts" / str(self.ssh.ports[host]) / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return sum(1 for line in lines if line.split()[:1] == [verb])

    def break_unit(self, host: str) -> None:
        """The unit keeps running but its health URL answers 503 until it is restarted."""
        (self.bin_dir / "hosts" / str(self.ssh.ports[host]) / f"{UNIT}.broken").touch()

    def run(
        self,
        playbook: str,
        change_id: str,
        *,
        hosts: list[str] = HOSTS,
        check: bool = False,
        **extravars: Any,
    ) -> PlaybookRun:
        # What Interlock passes: the service, the change id and direction, facts per host;
        # the catalog's hosts as --limit; --check --diff to preview, --diff to run.
        runner = ansible_runner.run(
            private_data_dir=str(self.private_data_dir),
            playbook=playbook,
            extravars={"service": "checkout-api", "interlock_change_id": change_id, **extravars},
            limit=",".join(hosts),
            cmdline="--check --diff" if check else "--diff",
            quiet=True,
            timeout=180,
            settings={"idle_timeout": 120},
            envvars={
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "HOME": os.environ.get("HOME", "/root"),
                "ANSIBLE_PRIVATE_KEY_FILE": str(self.ssh.key_file),
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_SSH_COMMON_ARGS": (
                    f"-o UserKnownHostsFile={self.ssh.known_hosts} -o StrictHostKeyChecking=yes"
                ),
            },
            suppress_env_files=True,
        )
        return PlaybookRun(status=runner.status, rc=runner.rc, events=list(runner.events))


def per_host(run: PlaybookRun) -> dict[str, dict[str, Any]]:
    """What each host reported with set_stats (per_host: true), read from that host's own task
    result, the way Interlock reads facts: ansible-runner's aggregate `artifact_data` carries
    only the stats that are not per host."""
    found: dict[str, dict[str, Any]] = {}
    for event in run.events:
        stats = (event.get("event_data", {}).get("res") or {}).get("ansible_stats")
        if event["event"] == "runner_on_ok" and stats:
            assert stats["per_host"] is True and stats["aggregate"] is False, stats
            found.setdefault(event["event_data"]["host"], {}).update(stats["data"])
    return found


def changed_on(run: PlaybookRun, task: str) -> set[str]:
    return {
        e["event_data"]["host"]
        for e in run.events
        if e["event"] == "runner_on_ok"
        and e["event_data"]["task"] == task
        and e["event_data"]["res"].get("changed")
    }


def failed_hosts(run: PlaybookRun) -> dict[str, str]:
    return {
        e["event_data"]["host"]: str(e["event_data"]["res"].get("msg", ""))
        for e in run.events
        if e["event"] in ("runner_on_failed", "runner_on_unreachable")
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemdFleet]:
    root = tmp_path_factory.mktemp("systemd")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shutil.copy(DOUBLE, bin_dir / "systemctl")
    path = f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    try:
        ssh = SshFleet.start(root / "ssh", {"checkout-api": HOSTS}, session_env={"PATH": path})
    except SshUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must reach real SSH hosts: {exc}")
        pytest.skip(str(exc))
    # The team's tree: the shipped playbooks as they are, with an inventory of its hosts.
    private = root / "playbooks"
    shutil.copytree(SYSTEMD_PLAYBOOKS, private)
    inventory = ssh.inventory()
    state_dirs = {h: root / "var" / h / "interlock" for h in HOSTS}
    hostvars = inventory["lab"]["hosts"]  # type: ignore[index]
    for host in HOSTS:
        health_port = _free_port()
        units = bin_dir / "hosts" / str(ssh.ports[host]) / "units"
        units.mkdir(parents=True)
        (units / f"{UNIT}.json").write_text(json.dumps({"port": health_port}))
        hostvars[host].update(
            {
                "interlock_health_url": f"http://127.0.0.1:{health_port}/health",
                "interlock_state_dir": str(state_dirs[host]),
                "interlock_health_retries": 5,
                # No sudo here: root becomes root with su, a real become all the same.
                "ansible_become_method": "su",
            }
        )
    inventory["lab"]["children"]["checkout-api"]["vars"] = {"interlock_unit": UNIT}  # type: ignore[index]
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    fleet = SystemdFleet(ssh=ssh, bin_dir=bin_dir, private_data_dir=private, state_dirs=state_dirs)
    try:
        yield fleet
    finally:
        for host in HOSTS:
            pid = fleet.pid(host)
            if pid:
                os.kill(pid, signal.SIGTERM)
        ssh.stop()


@pytest.fixture
def running(fleet: SystemdFleet) -> SystemdFleet:
    """Every host's unit running and healthy, no change recorded."""
    for host in HOSTS:
        fleet.systemctl(host, "restart", UNIT)
        shutil.rmtree(fleet.state_dirs[host], ignore_errors=True)
    return fleet


def test_the_preview_restarts_nothing_writes_nothing_and_names_every_host(running: SystemdFleet) -> None:
    before = {h: running.pid(h) for h in HOSTS}
    restarts = {h: running.calls(h, "restart") for h in HOSTS}

    preview = running.run("restart_service.yml", "prop-a1.run", check=True)

    assert (preview.status, preview.rc) == ("successful", 0), failed_hosts(preview)
    assert changed_on(preview, "Restart the unit") == set(HOSTS)  # what the approver sees
    assert per_host(preview) == {h: {"previous_pid": before[h], "pid": None} for h in HOSTS}
    assert {h: running.pid(h) for h in HOSTS} == before
    assert {h: running.calls(h, "restart") for h in HOSTS} == restarts
    assert not any(d.exists() for d in running.state_dirs.values())


def test_a_run_restarts_each_host_once_and_verify_checks_each_pid(running: SystemdFleet) -> None:
    before = {h: running.pid(h) for h in HOSTS}

    first = running.run("restart_service.yml", "prop-b2.run")

    assert (first.status, first.rc) == ("successful", 0), failed_hosts(first)
    after = {h: running.pid(h) for h in HOSTS}
    assert all(after[h] not in (0, before[h]) for h in HOSTS), (before, after)
    facts = per_host(first)
    assert facts == {h: {"previous_pid": before[h], "pid": after[h]} for h in HOSTS}
    restarts = {h: running.calls(h, "restart") for h in HOSTS}

    # A retry of the same change (a worker crashed before recording the result): nothing
    # restarts twice, and the same facts come back.
    again = running.run("restart_service.yml", "prop-b2.run")
    assert (again.status, per_host(again)) == ("successful", facts)
    assert {h: running.pid(h) for h in HOSTS} == after
    assert {h: running.calls(h, "restart") for h in HOSTS} == restarts

    verified = running.run("restart_service_verify.yml", "prop-b2.run", interlock_facts=facts)
    assert (verified.status, verified.rc) == ("successful", 0), failed_hosts(verified)
    assert per_host(verified) == {h: {"pid": after[h]} for h in HOSTS}

    # Facts that say web-2 was not restarted (its pid is the one "before"): verify names web-2.
    stale = {**facts, "web-2": {"previous_pid": after["web-2"], "pid": after["web-2"]}}
    refused = running.run("restart_service_verify.yml", "prop-b2.run", interlock_facts=stale)
    assert refused.status == "failed"
    assert set(failed_hosts(refused)) == {"web-2"}
    assert "checkout-api.service on web-2" in failed_hosts(refused)["web-2"]


def test_a_run_cut_short_after_its_restart_does_not_restart_again(running: SystemdFleet) -> None:
    old = running.pid("web-1")
    # The first attempt recorded its intent and restarted, then the worker died.
    running.state_dirs["web-1"].mkdir(parents=True)
    record = running.state_dirs["web-1"] / "prop-c3.run.web-1.restart.json"
    record.write_text(json.dumps({"unit": UNIT, "previous_pid": old, "pid": None}))
    running.systemctl("web-1", "restart", UNIT)
    new, restarts = running.pid("web-1"), running.calls("web-1", "restart")

    retried = running.run("restart_service.yml", "prop-c3.run", hosts=["web-1"])

    assert (retried.status, retried.rc) == ("successful", 0), failed_hosts(retried)
    assert running.calls("web-1", "restart") == restarts
    assert running.pid("web-1") == new
    assert per_host(retried) == {"web-1": {"previous_pid": old, "pid": new}}
    assert json.loads(record.read_text())["pid"] == new


def test_rollback_brings_each_host_back_healthy_and_verify_checks_that_direction(
    running: SystemdFleet,
) -> None:
    run = running.run("restart_service.yml", "prop-d4.run", hosts=["web-1", "web-2"])
    assert run.status == "successful", failed_hosts(run)
    facts = per_host(run)
    # After the restart, web-2 answers 503 and web-1 is down.
    running.break_unit("web-2")
    running.systemctl("web-1", "stop", UNIT)
    failed = running.run(
        "restart_service_verify.yml", "prop-d4.run", hosts=["web-1", "web-2"], interlock_facts=facts
    )
    assert failed.status == "failed" and set(failed_hosts(failed)) == {"web-1", "web-2"}
    untouched = running.pid("web-3"), running.calls("web-3", "restart")

    rollback = running.run("restart_service_rollback.yml", "prop-d4.rollback", hosts=["web-1", "web-2"])

    assert (rollback.status, rollback.rc) == ("successful", 0), failed_hosts(rollback)
    assert changed_on(rollback, "Start the unit if it is down") == {"web-1"}
    assert changed_on(rollback, "Restart the unit") == {"web-2"}
    reported = per_host(rollback)
    assert reported == {h: {"pid": running.pid(h)} for h in ("web-1", "web-2")}
    assert (running.pid("web-3"), running.calls("web-3", "restart")) == untouched
    back = running.run(
        "restart_service_verify.yml",
        "prop-d4.rollback",
        hosts=["web-1", "web-2"],
        interlock_direction="rollback",
        interlock_facts=facts,
    )
    assert (back.status, back.rc) == ("successful", 0), failed_hosts(back)


def test_a_host_without_a_health_url_is_refused_before_anything_changes_there(running: SystemdFleet) -> None:
    inventory_file = running.private_data_dir / "inventory" / "hosts.yml"
    original = inventory_file.read_text()
    inventory = yaml.safe_load(original)
    del inventory["lab"]["hosts"]["web-3"]["interlock_health_url"]
    inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    before = {h: running.pid(h) for h in HOSTS}
    restarts = running.calls("web-3", "restart")
    try:
        refused = running.run("restart_service.yml", "prop-e5.run")
    finally:
        inventory_file.write_text(original)
    assert refused.status == "failed"
    assert "rejected request on web-3" in failed_hosts(refused)["web-3"]
    assert running.pid("web-3") == before["web-3"]
    assert running.calls("web-3", "restart") == restarts

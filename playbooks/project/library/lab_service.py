#!/usr/bin/python
"""Ansible module managing an Interlock lab service process (start, stop, restart)."""

# Runs under Ansible's interpreter on the target: standard library and
# ansible.module_utils only, no imports from interlock. Ansible modules keep their
# DOCUMENTATION strings above the imports, and targets may run a Python older than
# 3.11 (no datetime.UTC), hence the two exemptions.
# ruff: noqa: E402, UP017

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_service
short_description: Start, stop or restart a service of an Interlock lab
description:
  - Manages the processes of an Interlock lab (see C(interlock.lab)) the way
    M(ansible.builtin.systemd_service) manages units, using the lab's pid files
    and the argv recorded in C(lab.json). No shell is involved.
  - A restart sends SIGTERM (SIGKILL after 5 seconds), starts a new process and
    waits until it answers C(/health) (any status) with its new pid.
  - With O(idempotency_key), a restart happens at most once per key: the outcome is
    recorded under C(run/changes/) while holding an exclusive lock, and a later call
    with the same key changes nothing and returns the recorded pids.
options:
  name:
    description: Name of the lab service, a key of C(services) in C(lab.json).
    type: str
    required: true
  state:
    description: C(started) and C(stopped) are idempotent; C(restarted) always restarts
      unless O(idempotency_key) was already used.
    type: str
    choices: [restarted, started, stopped]
    default: started
  lab_root:
    description: Folder of the lab (holds C(lab.json)).
    type: path
    required: true
  host:
    description:
      - The fleet host whose process to manage, for a service that runs on several hosts
        (C(hosts) in its C(lab.json) entry). Empty for a service that runs as one process.
    type: str
  idempotency_key:
    description:
      - Key of this restart, for example the change id. Letters, digits, C(.),
        C(_) and C(-), at most 240 characters.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author:
  - Interlock
"""

EXAMPLES = r"""
- name: Restart checkout-api once for this change
  lab_service:
    name: checkout-api
    state: restarted
    lab_root: /var/lib/interlock/lab
    idempotency_key: "chg-42.restart_service.restart.checkout-api"
  register: restart

- name: Make sure inventory-api runs
  lab_service:
    name: inventory-api
    state: started
    lab_root: /var/lib/interlock/lab
"""

RETURN = r"""
previous_pid:
  description: Pid serving before the call (null if the service was down).
  returned: always
  type: int
pid:
  description: Pid serving after the call (null when stopped, and in check mode
    when a new process would be started).
  returned: always
  type: int
replayed:
  description: True when O(idempotency_key) had already been used and nothing was done.
  returned: when idempotency_key is set
  type: bool
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
# Keys become file names under run/changes/, so no separators and a length cap.
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,239}")
STOP_GRACE = 5.0
START_TIMEOUT = 10.0
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    # A killed child of a non-reaping parent lingers as a zombie: that is not running.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def instance(name, host):
    # The lab's name for one process (interlock.lab._layout.instance).
    return f"{name}@{host}" if host else name


def is_lab_service(pid, root, name, host=None):
    # Guards against pid reuse: a stale pid file must never get a stranger killed.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return False
    mine = "interlock.lab.service" in argv and root in argv and name in argv
    return mine and (host is None or host in argv)


def running_pid(root, name, host=None):
    try:
        with open(os.path.join(root, "run", f"{instance(name, host)}.pid")) as f:
            pid = int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) and is_lab_service(pid, root, name, host) else None


def port_of(config, name, host):
    svc = config["services"][name]
    return svc["hosts"][host]["port"] if host else svc["port"]


def health(port):
    """(status, body) of /health, or None when nothing answers."""
    try:
        with _opener.open(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"{}")
    except (OSError, ValueError):
        return None


def stop(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 2.0
        time.sleep(0.05)


def start(module, root, config, name, previous_pid, host=None):
    argv = [a.replace("{name}", name) for a in config["start_argv"]]
    argv += ["--host", host] if host else []
    log_path = os.path.join(root, "logs", f"{instance(name, host)}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log:
        # The service daemonizes itself (--detach in start_argv): run() returns once it
        # has bound its port and forked, and it outlives this module process.
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
            timeout=START_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        module.fail_json(msg=f"{name} failed to start (exit {result.returncode}), see {log_path}")
    port = port_of(config, name, host)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = running_pid(root, name, host)
        answer = health(port) if pid and pid != previous_pid else None
        if answer is not None and answer[1].get("pid") == pid:
            return pid
        time.sleep(0.05)
    module.fail_json(msg=f"{name} did not answer /health within {START_TIMEOUT:.0f}s, see {log_path}")


def append_change(root, record):
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = json.dumps({"ts": stamp, **record}, sort_keys=True) + "\n"
    fd = os.open(os.path.join(root, "changes.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def write_record(path, record):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record(module, path):
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as err:
        module.fail_json(msg=f"unreadable idempotency record {path}: {err}")
    if not isinstance(record, dict) or "previous_pid" not in record:
        module.fail_json(msg=f"{path} is not a lab_service restart record; is the key shared?")
    return record


def restart(module, root, config, name, key, host=None):
    current = running_pid(root, name, host)
    before = f"pid {current} running\n" if current else "not running\n"
    if module.check_mode:
        return dict(
            changed=True,
            previous_pid=current,
            pid=None,
            diff=dict(before=before, after="pid <new> running (restarted)\n"),
        )
    if current:
        stop(current)
    pid = start(module, root, config, name, current, host)
    event = dict(event="restart", service=name, key=key, previous_pid=current, pid=pid)
    append_change(root, dict(event, host=host) if host else event)
    return dict(
        changed=True,
        previous_pid=current,
        pid=pid,
        diff=dict(before=before, after=f"pid {pid} running (restarted)\n"),
    )


def restart_once(module, root, config, name, key, host=None):
    records = os.path.join(root, "run", "changes")
    record_path = os.path.join(records, f"{key}.json")
    if module.check_mode:
        record = read_record(module, record_path)
        if record and record.get("pid"):
            return dict(changed=False, replayed=True, **record)
        return dict(restart(module, root, config, name, key, host), replayed=False)

    os.makedirs(records, exist_ok=True)
    # One change to a service at a time, as a service manager runs one job per unit: two
    # changes of one service (two proposals, two workers) would otherwise race for its port.
    # Always the service's lock first, then the change's: no two callers wait on each other.
    with (
        open(os.path.join(records, f"service-{instance(name, host)}.lock"), "w") as service_lock,
        open(os.path.join(records, f"{key}.lock"), "w") as lock,
    ):
        fcntl.flock(service_lock, fcntl.LOCK_EX)
        # Two executions of one change (a retry racing a slow original) serialize here.
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = read_record(module, record_path)
        if record and record.get("pid"):
            return dict(changed=False, replayed=True, previous_pid=record["previous_pid"], pid=record["pid"])
        current = running_pid(root, name, host)
        if record is not None:
            # An earlier attempt wrote its intent and died. If another process already
            # serves, that attempt got as far as the restart: finish its bookkeeping.
            previous = record["previous_pid"]
            if current is not None and current != previous:
                write_record(record_path, dict(previous_pid=previous, pid=current))
                return dict(changed=False, replayed=True, previous_pid=previous, pid=current)
        else:
            write_record(record_path, dict(previous_pid=current, pid=None))
        result = restart(module, root, config, name, key, host)
        if record is not None:
            result["previous_pid"] = record["previous_pid"]
        write_record(record_path, dict(previous_pid=result["previous_pid"], pid=result["pid"]))
        return dict(result, replayed=False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="started", choices=["restarted", "started", "stopped"]),
            lab_root=dict(type="path", required=True),
            idempotency_key=dict(type="str", no_log=False),
            host=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]
    key = module.params["idempotency_key"]
    host = module.params["host"] or None
    root = os.path.abspath(module.params["lab_root"])
    if not NAME.fullmatch(name):
        module.fail_json(msg=f"name {name!r} must match {NAME.pattern}")
    if host is not None and not NAME.fullmatch(host):
        module.fail_json(msg=f"host {host!r} must match {NAME.pattern}")
    if key is not None and not KEY.fullmatch(key):
        module.fail_json(msg=f"idempotency_key {key!r} must match {KEY.pattern}")
    try:
        with open(os.path.join(root, "lab.json")) as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        module.fail_json(msg=f"cannot read lab.json under {root}: {err}")
    if name not in config["services"]:
        module.fail_json(msg=f"unknown lab service {name!r}; known: {sorted(config['services'])}")
    fleet = config["services"][name].get("hosts") or {}
    if host is not None and host not in fleet:
        module.fail_json(msg=f"{name} does not run on host {host!r}; its hosts: {sorted(fleet) or 'none'}")
    if host is None and fleet:
        module.fail_json(msg=f"{name} runs on hosts {sorted(fleet)}: name one with host")
    # Lab processes carry the root as spelled in lab.json; match them by that spelling.
    root = config.get("root", root)

    if state == "restarted":
        result = (
            restart_once(module, root, config, name, key, host)
            if key
            else restart(module, root, config, name, key, host)
        )
        module.exit_json(**result)

    current = running_pid(root, name, host)
    if state == "started":
        if current:
            module.exit_json(changed=False, previous_pid=current, pid=current)
        diff = dict(before="not running\n", after="running (started)\n")
        if module.check_mode:
            module.exit_json(changed=True, previous_pid=None, pid=None, diff=diff)
        pid = start(module, root, config, name, None, host)
        append_change(root, dict(event="start", service=name, key=key, pid=pid))
        module.exit_json(
            changed=True,
            previous_pid=None,
            pid=pid,
            diff=dict(diff, after=f"pid {pid} running (started)\n"),
        )

    if not current:
        module.exit_json(changed=False, previous_pid=None, pid=None)
    diff = dict(before=f"pid {current} running\n", after="not running (stopped)\n")
    if not module.check_mode:
        stop(current)
        pid_file = os.path.join(root, "run", f"{instance(name, host)}.pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        append_change(root, dict(event="stop", service=name, key=key, previous_pid=current))
    module.exit_json(changed=True, previous_pid=current, pid=None, diff=diff)


if __name__ == "__main__":
    main()

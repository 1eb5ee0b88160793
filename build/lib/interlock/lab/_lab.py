"""The Lab: real service processes, releases, access lists and a monitor under one folder."""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from interlock.lab._http import request_json
from interlock.lab._layout import (
    FLEET_HOSTS,
    MONITOR,
    OTHER_SERVICE_RELEASES,
    STARTING_ACCESS,
    STARTING_RELEASE,
    STARTING_RELEASES,
    LabPaths,
    append_change,
    check_name,
    instance,
    load_config,
    write_atomic,
)
from interlock.lab._process import (
    belongs_to_lab,
    lab_processes,
    pid_alive,
    read_pid,
    running_pid,
    spawn_detached,
    tail,
    terminate,
)

logger = logging.getLogger(__name__)

START_TIMEOUT = 10.0


class LabError(RuntimeError):
    """The lab could not be brought into the asked state (a process failed to start...)."""


def _free_ports(count: int, taken: set[int]) -> list[int]:
    # Hold every socket until all are picked so the kernel cannot hand out one port twice.
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in taken:
                ports.append(port)
                taken.add(port)
    finally:
        for s in sockets:
            s.close()
    return ports


class Lab:
    """A local stand-in for production that playbooks and evidence connectors can act on.

    ``root`` holds everything: ``lab.json``, each service's releases and ``current``
    symlink, access lists, pid files, logs and the ``changes.jsonl`` audit trail.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.paths = LabPaths(self.root)

    def exists(self) -> bool:
        return self.paths.config.is_file()

    @property
    def config(self) -> dict[str, Any]:
        if not self.exists():
            raise LabError(f"no lab at {self.root}; create it first")
        return load_config(self.root)

    @property
    def services(self) -> list[str]:
        return sorted(self.config["services"])

    def create(
        self,
        services: dict[str, int] | None = None,
        monitor_port: int | None = None,
        hosts: dict[str, list[str]] | None = None,
    ) -> None:
        """Write the starting layout; a port of None or 0 means "pick a free one now".

        `hosts`: services that run as a fleet, one process per host, each on a port of its own
        (the service's `port` is its first host's). `Lab.fleet()` gives the lab's own fleet."""
        if self.exists():
            raise ValueError(f"a lab already exists at {self.root}; use reset() to start over")
        wanted = dict(services) if services is not None else dict.fromkeys(STARTING_RELEASES, 0)
        if not wanted:
            raise ValueError("a lab needs at least one service")
        for name in wanted:
            check_name("service", name)
            if name == MONITOR:
                raise ValueError(f"{MONITOR!r} is reserved for the lab monitor")
        fixed = {p for p in [*wanted.values(), monitor_port] if p}
        missing = [n for n, p in wanted.items() if not p] + ([] if monitor_port else [MONITOR])
        picked = dict(zip(missing, _free_ports(len(missing), set(fixed)), strict=True))
        fleet = {name: list(names) for name, names in (hosts or {}).items() if name in wanted}
        for host in (h for names in fleet.values() for h in names):
            check_name("host", host)
        host_ports = iter(_free_ports(sum(len(v) for v in fleet.values()), set(fixed) | set(picked.values())))
        fleet_ports = {name: {h: next(host_ports) for h in names} for name, names in fleet.items()}

        python = sys.executable
        root = str(self.root)
        config = {
            "root": root,
            "python": python,
            "monitor_port": monitor_port or picked[MONITOR],
            "services": {
                name: {
                    "port": next(iter(fleet_ports[name].values()))
                    if name in fleet_ports
                    else port or picked[name],
                    "releases": STARTING_RELEASES.get(name, OTHER_SERVICE_RELEASES),
                    "starting_release": STARTING_RELEASE,
                    **(
                        {"hosts": {h: {"port": p} for h, p in fleet_ports[name].items()}}
                        if name in fleet_ports
                        else {}
                    ),
                }
                for name, port in wanted.items()
            },
            "access": STARTING_ACCESS,
            # argv lists, never a shell line: "{name}" is the only placeholder.
            "start_argv": [
                python,
                "-m",
                "interlock.lab.service",
                "--root",
                root,
                "--name",
                "{name}",
                "--detach",
            ],
            "monitor_argv": [python, "-m", "interlock.lab.monitor", "--root", root, "--detach"],
        }
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_starting_state(config)
        self.paths.changes.touch()
        # lab.json goes last: exists() is only true for a complete layout.
        write_atomic(self.paths.config, json.dumps(config, indent=2) + "\n")
        logger.info("created lab at %s", self.root)

    def _write_starting_state(self, config: dict[str, Any]) -> None:
        p = self.paths
        for name, svc in config["services"].items():
            service_dir = p.service_dir(name)
            shutil.rmtree(service_dir, ignore_errors=True)
            for version, healthy in svc["releases"].items():
                release = service_dir / "releases" / version
                release.mkdir(parents=True)
                payload = {"version": version, "healthy": healthy}
                (release / "release.json").write_text(json.dumps(payload) + "\n")
            # Relative, so the tree can be moved and reads the way a deploy tool writes it.
            (service_dir / "current").symlink_to(Path("releases") / svc["starting_release"])
        shutil.rmtree(p.access_dir, ignore_errors=True)
        p.access_dir.mkdir()
        for group, members in config["access"].items():
            (p.access_dir / group).write_text("".join(f"{m}\n" for m in sorted(members)))
        # Pid files are gone after stop(); idempotency records belong to the old state.
        shutil.rmtree(p.run_dir, ignore_errors=True)
        p.change_records.mkdir(parents=True)
        p.logs_dir.mkdir(exist_ok=True)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        # The CLI and a worker may start or reset one lab at the same time: without this
        # both would spawn a service and one would fail on the taken port.
        with (self.root / ".lab.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def start(self) -> None:
        """Start every service and the monitor that is not already running, then wait for them."""
        config = self.config
        with self._exclusive():
            self._start(config)

    @staticmethod
    def fleet() -> dict[str, list[str]]:
        """The lab's fleet: checkout-api on web-1..3, inventory-api on two hosts."""
        return {name: list(hosts) for name, hosts in FLEET_HOSTS.items()}

    @staticmethod
    def instances(config: dict[str, Any]) -> list[tuple[str, str | None, int]]:
        """Every service process of the lab: (service, host or None, port)."""
        found: list[tuple[str, str | None, int]] = []
        for name in sorted(config["services"]):
            svc = config["services"][name]
            if "hosts" in svc:
                found += [(name, host, int(h["port"])) for host, h in svc["hosts"].items()]
            else:
                found.append((name, None, int(svc["port"])))
        return found

    def _start(self, config: dict[str, Any]) -> None:
        launches: dict[str, tuple[list[str], Path]] = {}
        ports: dict[str, int] = {}
        for name, host, port in [*self.instances(config), (MONITOR, None, 0)]:
            key = instance(name, host)
            if running_pid(self.paths.pid_file(key), self.root) is not None:
                continue
            self.paths.pid_file(key).unlink(missing_ok=True)
            if name == MONITOR:
                argv = config["monitor_argv"]
            else:
                argv = [a.replace("{name}", name) for a in config["start_argv"]]
                argv += ["--host", host] if host else []
            launches[key] = (argv, self.paths.log_file(key))
            ports[key] = port
        try:
            spawn_detached(launches, self.root)
        except RuntimeError as err:
            raise LabError(f"lab {err}") from err
        deadline = time.monotonic() + START_TIMEOUT
        for name in launches:
            self._wait_ready(name, deadline, ports[name])
        if launches:
            logger.info("started %s in lab %s", ", ".join(launches), self.root)

    def _wait_ready(self, name: str, deadline: float, port: int = 0) -> None:
        while True:
            pid = running_pid(self.paths.pid_file(name), self.root)
            if pid is not None:
                if name == MONITOR:
                    answer = request_json(f"{self._monitor_url()}/-/healthy")
                    if answer is not None:
                        return
                else:
                    answer = request_json(f"http://127.0.0.1:{port}/health")
                    # Any answer counts (a broken release answers 503), but from this pid.
                    if answer is not None and isinstance(answer[1], dict) and answer[1].get("pid") == pid:
                        return
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {name} did not answer within {START_TIMEOUT:.0f}s; "
                    f"last log lines:\n{tail(self.paths.log_file(name))}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every lab process, including any whose pid file went missing."""
        if not self.exists():
            return
        with self._exclusive():
            self._stop()

    def _stop(self) -> None:
        names = [*(instance(n, h) for n, h, _ in self.instances(self.config)), MONITOR]
        pids = {read_pid(self.paths.pid_file(n)) for n in names} | set(lab_processes(self.root))
        live = [p for p in pids if p is not None and pid_alive(p) and belongs_to_lab(p, self.root)]
        killed = terminate(live)
        if killed:
            logger.warning("lab processes %s ignored SIGTERM and were killed", killed)
        for name in names:
            self.paths.pid_file(name).unlink(missing_ok=True)

    def reset(self) -> None:
        """Stop, restore the starting state on the same ports, and start again."""
        config = self.config
        with self._exclusive():
            self._stop()
            self._write_starting_state(config)
            append_change(self.root, {"event": "reset"})
            self._start(config)

    def degrade(
        self, service: str, persistent: bool = False, host: str | None = None, after_restart: bool = False
    ) -> None:
        """Make a running service fail part of its traffic until it is restarted.

        `persistent`: the errors come from a failing dependency instead; the service's own
        health check passes, and a restart does not clear them (only a reset does).
        `host`: only that host's process. `after_restart`: nothing changes now; the host's next
        start comes up failing its health check (once: the start after that is healthy again).
        """
        if service not in self.config["services"]:
            raise ValueError(f"unknown lab service {service!r}; known: {', '.join(self.services)}")
        fleet = self.config["services"][service].get("hosts", {})
        if host is not None and host not in fleet:
            known = ", ".join(fleet) or "none: it runs as one process"
            raise ValueError(f"unknown host {host!r} of lab service {service}; hosts: {known}")
        if after_restart:
            targets = [host] if host else list(fleet) or [None]
            for target in targets:
                marker = self.paths.restart_fault_file(instance(service, target))
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("broken after restart\n")
            append_change(
                self.root, {"event": "degraded", "service": service, "host": host, "after_restart": True}
            )
            return
        if host is not None:
            url = f"http://127.0.0.1:{fleet[host]['port']}/admin/degrade"
            answer = request_json(url, method="POST")
            if answer is None or answer[0] != 200:
                raise LabError(f"lab service {service} on {host} did not accept degrade: {answer}")
            append_change(self.root, {"event": "degraded", "service": service, "host": host})
            return
        if persistent:
            fault = self.paths.fault_file(service)
            fault.parent.mkdir(parents=True, exist_ok=True)
            fault.write_text("dependency failing\n")
            append_change(self.root, {"event": "degraded", "service": service, "persistent": True})
            return
        answer = request_json(f"{self._service_url(service)}/admin/degrade", method="POST")
        if answer is None or answer[0] != 200:
            raise LabError(f"lab service {service} did not accept degrade: {answer}")
        append_change(self.root, {"event": "degraded", "service": service})

    def status(self) -> dict[str, Any]:
        config = self.config
        services = {}
        for name in sorted(config["services"]):
            url = self._service_url(name)
            health = request_json(f"{url}/health")
            stats = request_json(f"{url}/stats")
            body = health[1] if health and isinstance(health[1], dict) else {}
            current = self.paths.service_dir(name) / "current"
            services[name] = {
                "port": config["services"][name]["port"],
                "version": body.get("version"),
                "release": Path(current.readlink()).name if current.is_symlink() else None,
                "pid": running_pid(self.paths.pid_file(name), self.root),
                "healthy": health is not None and health[0] == 200,
                "degraded": bool(stats and isinstance(stats[1], dict) and stats[1].get("degraded")),
                "url": url,
            }
            fleet = config["services"][name].get("hosts")
            if fleet:
                hosts = {h: self._instance_status(name, h, int(v["port"])) for h, v in fleet.items()}
                first = next(iter(hosts.values()))
                services[name].update(
                    pid=first["pid"],
                    healthy=all(h["healthy"] for h in hosts.values()),
                    degraded=any(h["degraded"] for h in hosts.values()),
                    hosts=hosts,
                )
        return {
            "root": str(self.root),
            "monitor": {"port": config["monitor_port"], "url": self._monitor_url()},
            "services": services,
            "groups": self.groups(),
        }

    def _instance_status(self, name: str, host: str, port: int) -> dict[str, Any]:
        url = f"http://127.0.0.1:{port}"
        health = request_json(f"{url}/health")
        stats = request_json(f"{url}/stats")
        body = health[1] if health and isinstance(health[1], dict) else {}
        return {
            "port": port,
            "version": body.get("version"),
            "pid": running_pid(self.paths.pid_file(instance(name, host)), self.root),
            "healthy": health is not None and health[0] == 200,
            "degraded": bool(stats and isinstance(stats[1], dict) and stats[1].get("degraded")),
            "url": url,
        }

    def groups(self) -> dict[str, list[str]]:
        return {
            f.name: sorted(line for line in f.read_text().splitlines() if line.strip())
            for f in sorted(self.paths.access_dir.iterdir())
            if f.is_file() and not f.name.startswith(".")
        }

    def _service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.config['services'][name]['port']}"

    def _monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.config['monitor_port']}"

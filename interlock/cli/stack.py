"""The stack: `interlock up` (the embedded stack) and `interlock worker`."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from interlock.cli.common import app, fail, out, run, settings


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Temporal frontend port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    external: Annotated[
        bool, typer.Option("--external", help="Use the server at TEMPORAL_ADDRESS; start none.")
    ] = False,
    api_port: Annotated[
        int | None,
        typer.Option("--api-port", help="Port of the HTTP intake (default: INTERLOCK_API_PORT, else 8080)."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Port of the Prometheus /metrics endpoint (0: off).")
    ] = None,
    no_lab: Annotated[
        bool,
        typer.Option(
            "--no-lab",
            help="Start no lab: your own policy and playbooks (INTERLOCK_POLICY, INTERLOCK_PLAYBOOKS).",
        ),
    ] = False,
) -> None:
    """Start the embedded stack: Temporal dev server, worker, lab, HTTP intake. Ctrl-C stops it all."""
    from interlock.api import ApiServeError, ApiSettings
    from interlock.stack import PortTaken, run_stack

    s = settings()
    if no_lab:
        # Without the lab, the built-in policy and playbooks would point at nothing.
        missing = [
            name
            for name, field in (("INTERLOCK_POLICY", "policy_file"), ("INTERLOCK_PLAYBOOKS", "playbooks_dir"))
            if field not in s.model_fields_set
        ]
        if missing:
            fail(
                f"interlock up --no-lab needs your own policy and playbooks: set {' and '.join(missing)}",
                2,
            )
    try:
        api = ApiSettings()
    except ValidationError as exc:
        problems = [f"INTERLOCK_API_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors()]
        fail("invalid setting: " + "; ".join(problems), 2)
    if api_port is not None:
        api = api.model_copy(update={"port": api_port})
    if metrics_port is not None:
        s = s.model_copy(update={"metrics_port": metrics_port})
    if not external:
        s = s.model_copy(update={"temporal_address": f"localhost:{port}"})
    try:
        run(
            lambda: run_stack(
                s, port=port, ui_port=ui_port, external=external, console=out, api=api, lab=not no_lab
            )
        )
    except (ApiServeError, PortTaken) as exc:
        fail(str(exc), 1)


@app.command()
def worker(
    alive: Annotated[
        bool, typer.Option("--alive", help="Exit 0 if this host's worker is polling (health check).")
    ] = False,
) -> None:
    """Run only a worker against TEMPORAL_ADDRESS (for production); SIGTERM stops it gracefully."""
    import logging

    from interlock.worker.main import is_alive, run_worker

    s = settings()
    if alive:
        raise typer.Exit(0 if is_alive(s) else 1)
    logging.basicConfig(level=s.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        run(lambda: run_worker(s))
    except KeyboardInterrupt:
        pass

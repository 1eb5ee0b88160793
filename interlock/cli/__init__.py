"""The `interlock` command: run the stack, propose, decide, inspect.

One small module per group of commands; this package wires them into one Typer app. Every
command that prints for people also takes `--json`. Errors are one line on stderr and a
non-zero exit code (2 for refused input), never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

from interlock.cli.common import app

# The command modules register themselves on import, in the order `--help` lists them.
for _module in ("stack", "proposals", "decisions", "killswitch", "lab", "policy"):
    importlib.import_module(f"interlock.cli.{_module}")

from interlock.cli.proposals import proposals_table, render_state  # noqa: E402

__all__ = ["app", "main", "proposals_table", "render_state"]


def _mount_optional() -> None:
    """Sub-commands from the audit and intake packages."""
    from interlock.api import api_command
    from interlock.audit.cli import audit_app, metrics_command
    from interlock.demo import demo_command
    from interlock.tokens import tokens_app

    app.add_typer(audit_app, name="audit", help="The tamper-evident audit trail.")
    app.command(name="metrics")(metrics_command)
    app.add_typer(tokens_app, name="tokens", help="Recommender tokens for the HTTP intake.")
    app.command(name="api")(api_command)
    app.command(name="demo")(demo_command)
    from interlock.mcp.command import mcp_command

    app.command(name="mcp")(mcp_command)
    from interlock.cli.config import config_app

    app.add_typer(config_app, name="config")
    from interlock.cli.db import db_app

    app.add_typer(db_app, name="db")
    from interlock.tracing import trace_command

    app.command(name="trace")(trace_command)
    from interlock.cli.autonomy import baseline_app, report_command, scorecard_command

    app.command(name="scorecard")(scorecard_command)
    app.add_typer(baseline_app, name="baseline")
    app.command(name="report")(report_command)


_mount_optional()


def main() -> None:
    code: int = 0
    try:
        app()
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    _exit_now(code)


def _exit_now(code: int) -> None:
    """Exit without CPython's finalization once everything is flushed.

    The Temporal client's Rust threads can still call into Python while the interpreter is
    finalizing, and CPython then aborts the process ("PyGILState_Release ... finalizing",
    SIGABRT; temporalio/sdk-python#300): a command that did its work would exit -6. Spans are
    flushed and streams written first, so nothing is lost by skipping the teardown.
    """
    if "interlock.tracing" in sys.modules:
        from interlock.tracing import shutdown_tracing

        try:
            shutdown_tracing()
        except Exception:  # noqa: BLE001 - exiting anyway; a tracing backend must not block it
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)

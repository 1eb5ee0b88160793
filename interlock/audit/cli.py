"""The audit commands: `interlock audit verify|timeline` and `interlock metrics`.

Errors are one line on stderr and a non-zero exit (2 for bad input), never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from interlock.audit import open_store
from interlock.settings import Settings

if TYPE_CHECKING:
    from interlock.audit.store import AuditEvent, AuditStore

audit_app = typer.Typer(
    help="The audit trail: check its hash chain, read a proposal's events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '24h', '7d', '2w' as a timedelta."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 24h, 7d)")
    return timedelta(seconds=float(match[1]) * UNIT_SECONDS[match[2]])


@contextmanager
def opened_store() -> Iterator[AuditStore]:
    from interlock.audit.store import AuditStoreError

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [f"{e['loc'][0] if e['loc'] else '?'}: {e['msg']}" for e in exc.errors()]
        fail("invalid setting: " + "; ".join(problems), 2)
    try:
        store = open_store(settings)
    except AuditStoreError as exc:
        fail(str(exc))
    try:
        yield store
    except AuditStoreError as exc:
        fail(str(exc))
    finally:
        store.close()


@audit_app.command()
def verify(json_out: JsonFlag = False) -> None:
    """Recompute the hash chain; exit 1 and list each edited, missing or moved row if broken."""
    with opened_store() as store:
        report = store.verify()
    if json_out:
        print_json(report.model_dump(mode="json"))
    elif report.ok:
        out.print(
            f"audit chain intact: {report.events} events, last row {report.head_seq}, "
            f"checked at {report.rate_per_s:,.0f} events/s"
        )
    else:
        table = Table(title=f"audit chain broken: {len(report.problems)} problem(s)")
        for column in ("row", "event", "problem", "detail"):
            table.add_column(column, overflow="fold")
        for p in report.problems:
            table.add_row(str(p.seq or ""), p.event_id or "", p.kind.value, p.detail)
        out.print(table)
    if not report.ok:
        raise typer.Exit(1)


def _summary(event: AuditEvent) -> str:
    data = event.data or {}
    if event.kind == "decision":
        who = "person" if data.get("human") else "policy"
        signed = ", signed" if data.get("signed") else (", UNSIGNED" if data.get("human") else "")
        reason = f": {data['reason']}" if data.get("reason") else ""
        return f"{data.get('decision')} by {data.get('approver')} ({who}{signed}){reason}"
    if event.kind == "execution_finished":
        return f"{'ok' if data.get('ok') else 'failed'}, {len(data.get('tasks') or [])} task(s)"
    text = ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, dict | list))
    return text[:120]


@audit_app.command()
def timeline(
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id.")],
    json_out: JsonFlag = False,
) -> None:
    """Every audit event of one proposal, in the order it was recorded."""
    with opened_store() as store:
        events = store.timeline(proposal_id)
    if not events:
        fail(f"no audit events for proposal {proposal_id!r}")
    if json_out:
        print_json([e.model_dump(mode="json") for e in events])
        return
    table = Table(title=f"audit trail of {proposal_id}")
    for column in ("time (UTC)", "kind", "actor", "status", "detail"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.kind,
            e.actor or "",
            e.status or "",
            _summary(e),
        )
    out.print(table)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h" if value < 172800 else f"{value / 86400:.1f}d"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def metrics_command(
    since: Annotated[
        str | None, typer.Option("--since", help="Only proposals submitted in this window: 24h, 7d.")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="One row per recommender, model or action.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Approval metrics from the audit trail: MTTR, first response, backlog, override rates."""
    from interlock.audit.metrics import GROUP_COLUMNS, compute_metrics

    try:
        window = parse_duration(since) if since is not None else None
    except ValueError as exc:
        fail(str(exc), 2)
    if by is not None and by not in GROUP_COLUMNS:
        fail(f"--by must be one of {', '.join(GROUP_COLUMNS)}, not {by!r}", 2)
    with opened_store() as store:
        metrics = compute_metrics(store, window, by)  # type: ignore[arg-type]
    if json_out:
        print_json(metrics)
        return
    rows = [("all", metrics["overall"])]
    rows += [(g["group"] or "(none)", g) for g in metrics["groups"]]
    title = "approval metrics" + (f", proposals submitted in the last {since}" if since else "")
    table = Table(title=title)
    headers = [by or "", "proposals", "MTTR mean", "MTTR median", "1st response", "backlog"]
    headers += ["oldest open", "override", "false rec.", "escalated", "exceptions"]
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for label, m in rows:
        table.add_row(
            label,
            str(m["proposals"]),
            _seconds(m["mttr_mean_seconds"]),
            _seconds(m["mttr_median_seconds"]),
            _seconds(m["first_response_median_seconds"]),
            str(m["backlog"]),
            _seconds(m["backlog_oldest_seconds"]),
            _ratio(m["override_ratio"]),
            _ratio(m["false_recommendation_ratio"]),
            _ratio(m["escalation_ratio"]),
            str(m["audit_exceptions"]),
        )
    out.print(table)

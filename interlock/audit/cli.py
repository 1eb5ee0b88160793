"""The audit commands: `interlock audit verify|timeline` and `interlock metrics`.

Errors are one line on stderr and a non-zero exit (2 for bad input), never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from interlock.audit import open_store
from interlock.console import fail, print_json
from interlock.settings import Settings
from interlock.untrusted import plain

if TYPE_CHECKING:
    from interlock.audit.history import ReplayOutcome
    from interlock.audit.store import AuditEvent, AuditStore

audit_app = typer.Typer(
    help="The audit trail: check its hash chain, read a proposal's events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _cells(*values: str) -> list[Text]:
    # Text cells: rich reads a string cell as markup, and these hold what recommenders, sources
    # and history events wrote; escape sequences are removed as well.
    return [Text(plain(v)) for v in values]


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '24h', '7d', '2w' as a timedelta."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 24h, 7d)")
    return timedelta(seconds=float(match[1]) * UNIT_SECONDS[match[2]])


@contextmanager
def opened_store(public_key: str | None = None) -> Iterator[AuditStore]:
    from interlock.audit.store import AuditStoreError

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [f"{e['loc'][0] if e['loc'] else '?'}: {e['msg']}" for e in exc.errors()]
        fail("invalid setting: " + "; ".join(problems), 2)
    try:
        store = open_store(settings, public_key=public_key)
    except AuditStoreError as exc:
        fail(str(exc))
    try:
        yield store
    except AuditStoreError as exc:
        fail(str(exc))
    finally:
        store.close()


PublicKeyOption = Annotated[
    str | None,
    typer.Option(
        "--public-key",
        help="The audit public key to check checkpoints with: base64, or a .pub/.pem file "
        "(default: INTERLOCK_AUDIT_PUBLIC_KEY, else the signing key's .pub).",
    ),
]


@audit_app.command()
def verify(
    json_out: JsonFlag = False,
    public_key: PublicKeyOption = None,
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="Check an export bundle offline instead of the store."),
    ] = None,
) -> None:
    """Recompute the hash chain and check it against the signed checkpoints in the anchor.

    Exit 1 and list each edited, missing, moved or re-chained row (and the checkpoint it
    disagrees with) if broken. With --bundle, check an export bundle without any server.
    """
    if bundle is not None:
        _verify_bundle(bundle, public_key, json_out)
        return
    with opened_store(public_key) as store:
        report = store.verify()
    if json_out:
        print_json(report.model_dump(mode="json"))
    elif report.ok:
        out.print(
            f"audit chain intact: {report.events} events, last row {report.head_seq}, "
            f"checked at {report.rate_per_s:,.0f} events/s",
            markup=False,
        )
        if report.checkpoints:
            tail = f", {report.unanchored_rows} newer row(s) not yet" if report.unanchored_rows else ""
            out.print(
                f"signed checkpoints ({report.anchor}): {report.checkpoints}, the newest vouches for "
                f"row {report.anchored_seq}{tail}",
                markup=False,
            )
    else:
        table = Table(title=f"audit chain broken: {len(report.problems)} problem(s)")
        for column in ("row", "event", "problem", "checkpoint", "detail"):
            table.add_column(column, overflow="fold")
        for p in report.problems:
            checkpoint = f"row {p.checkpoint_seq}, {p.checkpoint_at}" if p.checkpoint_seq else ""
            table.add_row(*_cells(str(p.seq or ""), p.event_id or "", p.kind.value, checkpoint, p.detail))
        out.print(table)
    if not report.ok:
        raise typer.Exit(1)


def _verify_bundle(folder: Path, public_key: str | None, json_out: bool) -> None:
    from interlock.audit.bundle_check import BundleInvalid, check_bundle
    from interlock.audit.checkpoint import CheckpointKeyError, TrustedKeys

    try:
        trusted = TrustedKeys.parse(public_key) if public_key else None
        result = check_bundle(folder, trusted)
    except (BundleInvalid, CheckpointKeyError) as exc:
        fail(str(exc), 2)
    if json_out:
        print_json(result.model_dump(mode="json"))
    else:
        verdict = "intact" if result.ok else "BROKEN"
        out.print(
            f"bundle {verdict}: {result.events} event(s), {result.events_anchored} vouched for by "
            f"{result.checkpoints_valid} valid checkpoint(s) of {result.checkpoints}; keys "
            f"{', '.join(result.key_ids) or 'none'} ({result.key_source})",
            markup=False,
        )
        for problem in result.problems:
            out.print(f"  {problem}", markup=False)
    if not result.ok:
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
            *_cells(
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.kind,
                e.actor or "",
                e.status or "",
                _summary(e),
            )
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
    by: Annotated[
        str | None, typer.Option("--by", help="One row per recommender, model, action or channel.")
    ] = None,
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
    headers = [by or "", "proposals", "MTTR mean", "MTTR median", "1st response", "backlog"]
    headers += ["oldest open", "override", "false rec.", "escalated", "exceptions"]
    cells = [
        [
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
        ]
        for label, m in rows
    ]
    for table in metrics_tables(title, headers, cells, out):
        out.print(table)


def metrics_tables(title: str, headers: list[str], cells: list[list[str]], console: Console) -> list[Table]:
    """One wide table when it fits the terminal; otherwise the metrics as rows, one column per
    group (as many tables as it takes), so no number is cut at 80 columns."""
    from interlock.tables import natural_width, transposed

    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in cells:
        table.add_row(*_cells(*row))
    if natural_width(console, table) <= console.width:
        return [table]
    return transposed(title, [headers[0] or "metric", *headers[1:]], cells, console.width)


# --- Histories: replay, reconcile, export ------------------------------------------------------


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = [f"{e['loc'][0] if e['loc'] else '?'}: {e['msg']}" for e in exc.errors()]
        fail("invalid setting: " + "; ".join(problems), 2)


def _run(coro: Any) -> Any:
    import asyncio

    from interlock.temporal import TemporalUnavailable

    try:
        return asyncio.run(coro)
    except TemporalUnavailable as exc:
        fail(str(exc), 3)


async def _fetch(settings: Settings, workflow_id: str) -> Any:
    from temporalio.service import RPCError

    from interlock.temporal import connect

    client = await connect(settings)
    try:
        return await client.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        fail(f"cannot fetch the history of {workflow_id!r}: {exc.message}")


def _print_timeline(facts: Any, title: str) -> None:
    table = Table(title=title)
    for column in ("time (UTC)", "event", "what", "detail"):
        table.add_column(column, overflow="fold")
    for item in facts.timeline:
        at = item.at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(*_cells(at, str(item.event_id), item.what, item.detail))
    out.print(table)


@audit_app.command()
def replay(
    history_file: Annotated[
        Path | None,
        typer.Option(
            "--history", help="A history from `temporal workflow show --output json` or the Web UI."
        ),
    ] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--workflow-id", help="Fetch this proposal's history from the server.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every closed proposal on the server.")] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="With --all: only those closed in this window (24h, 7d).")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", min=1, help="With --all: replay in this many processes (default: one per CPU)."
        ),
    ] = None,
    sandboxed: Annotated[
        bool,
        typer.Option(
            "--sandboxed",
            help="With --all: also run the workflow code in the worker's sandbox, which refuses "
            "non-deterministic calls (clock, randomness, I/O) on every path the histories take. "
            "About 3 times slower. --history and --workflow-id always replay sandboxed.",
        ),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Check a history against today's workflow code (determinism) and print its decision timeline.

    Replay checks that the code issues the commands the history records (activities, timers, ...).

    --all replays outside the sandbox, in parallel processes, unless --sandboxed: the worker
    and tests/unit/test_replay.py run the same code in the sandbox.

    Exit 1 when a history does not replay: the code would decide differently from the record.
    """
    from interlock.audit.history import (
        HistoryInvalid,
        closed_histories,
        load_history,
        read_history,
        replay_many,
    )
    from interlock.audit.history import replay as replay_history

    if sum(x is not None for x in (history_file, workflow_id, all_ or None)) != 1:
        fail("give exactly one of --history FILE, --workflow-id ID or --all", 2)
    if since is not None and not all_:
        fail("--since goes with --all", 2)
    if (jobs is not None or sandboxed) and not all_:
        fail("--jobs and --sandboxed go with --all", 2)
    try:
        window = parse_duration(since) if since is not None else None
    except ValueError as exc:
        fail(str(exc), 2)

    if all_:
        settings = _settings()

        async def everything() -> list[ReplayOutcome]:
            from interlock.temporal import connect

            client = await connect(settings)
            return await replay_many(await closed_histories(client, window), jobs=jobs, sandboxed=sandboxed)

        results = _run(everything())
        failures = [r for r in results if not r.ok]
        if json_out:
            print_json(
                {
                    "replayed": len(results),
                    "failed": len(failures),
                    "sandboxed": sandboxed,
                    "results": [
                        {"workflow_id": r.workflow_id, "run_id": r.run_id, "ok": r.ok, "error": r.error}
                        for r in results
                    ],
                }
            )
        else:
            for r in failures:
                out.print(f"FAILED {r.workflow_id} (run {r.run_id}): {r.error}", markup=False)
            out.print(f"replayed {len(results)} closed proposal(s): {len(failures)} failed", markup=False)
        if failures:
            raise typer.Exit(1)
        return

    if history_file is not None:
        try:
            text = history_file.read_text()
        except OSError as exc:
            fail(f"cannot read {history_file}: {exc.strerror or exc}", 2)
        try:
            history = load_history(text, history_file.stem)
        except HistoryInvalid as exc:
            fail(f"{history_file}: {exc}", 2)
    else:
        assert workflow_id is not None
        history = _run(_fetch(_settings(), workflow_id))
    error = _run(replay_history(history))
    facts = read_history(history)
    if json_out:
        print_json(
            {
                "workflow_id": history.workflow_id,
                "deterministic": error is None,
                "error": error,
                "timeline": [i.as_json() for i in facts.timeline],
            }
        )
    else:
        _print_timeline(facts, f"decision timeline of {history.workflow_id} (from Temporal's history)")
        if error is None:
            out.print("replay: OK, today's workflow code makes the same decisions as this history")
        else:
            out.print(
                f"replay: FAILED, the workflow code no longer matches this history: {error}", markup=False
            )
    if error is not None:
        raise typer.Exit(1)


@audit_app.command()
def reconcile(
    since: Annotated[
        str | None, typer.Option("--since", help="Only proposals started in this window (24h, 7d).")
    ] = None,
    workflow_ids: Annotated[
        list[str] | None, typer.Option("--workflow-id", help="Only this proposal (repeatable).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Compare the audit store with every history still on the server; record each difference.

    Each difference (an event the history shows recorded but the store lacks, a row that differs,
    a row the history never asked for, a terminated run, a run closed without a `final` event, a
    store proposal that never ended and has no workflow left on the server) is recorded once as an
    `audit_exception` event, which the `audit exceptions` metric counts. Exit 1 when there is any.
    """
    from temporalio.service import RPCError, RPCStatusCode

    from interlock.audit.history import (
        all_histories,
        compare,
        histories_gone,
        read_history,
        record_exceptions,
    )

    try:
        window = parse_duration(since) if since is not None else None
    except ValueError as exc:
        fail(str(exc), 2)
    settings = _settings()

    async def fetch() -> list[Any]:
        from interlock.temporal import connect

        client = await connect(settings)
        if not workflow_ids:
            return await all_histories(client, window)
        found = []
        for w in workflow_ids:
            try:
                found.append(await client.get_workflow_handle(w).fetch_history())
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        return found

    try:
        histories = _run(fetch())
    except RPCError as exc:
        fail(f"cannot fetch a history: {exc.message}")
    with opened_store() as store:
        diffs = []
        have: set[str] = set()
        for history in histories:
            facts = read_history(history)
            have |= {history.workflow_id, facts.proposal_id or history.workflow_id}
            diffs += compare(facts, store)
        gone, purged = histories_gone(store, have, window, workflow_ids or None)
        diffs += gone
        new = record_exceptions(store, diffs)
    if json_out:
        print_json(
            {
                "histories": len(histories),
                "differences": [d.as_json() for d in diffs],
                "newly_recorded": new,
                "histories_gone_after_final": purged,
            }
        )
    elif diffs:
        table = Table(title=f"audit exceptions: {len(diffs)} difference(s) between the store and Temporal")
        for column in ("proposal", "problem", "event", "detail"):
            table.add_column(column, overflow="fold")
        for d in diffs:
            table.add_row(*_cells(d.proposal_id, d.problem, d.event_id or "", d.detail))
        out.print(table)
        out.print(f"{new} newly recorded as audit_exception events", markup=False)
    else:
        out.print(f"store and Temporal agree: {len(histories)} history(ies) reconciled", markup=False)
    if diffs:
        raise typer.Exit(1)


@audit_app.command()
def export(
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the bundle into (created).")],
    history_file: Annotated[
        Path | None, typer.Option("--history", help="Use this exported history instead of the server's.")
    ] = None,
) -> None:
    """Write a bundle an auditor can check years later without the server.

    history.json, policy.yaml, events.jsonl, signatures.json, verification.json, MANIFEST.json,
    SHA256SUMS and a README saying how to check each.
    """
    from interlock.audit.bundle import write_bundle
    from interlock.audit.history import HistoryInvalid, load_history

    settings = _settings()
    if out_dir.exists() and any(out_dir.iterdir()):
        fail(f"{out_dir} is not empty: give a new folder", 2)
    if history_file is not None:
        try:
            history = load_history(history_file.read_text(), proposal_id)
        except (OSError, HistoryInvalid) as exc:
            fail(f"{history_file}: {exc}", 2)
    else:
        history = _run(_fetch(settings, proposal_id))
    with opened_store() as store:
        if not store.timeline(proposal_id):
            fail(f"no audit events for proposal {proposal_id!r}")
        manifest = _run(write_bundle(settings, store, proposal_id, history, out_dir))
    out.print(f"bundle written to {out_dir}:", markup=False)
    for name, info in manifest["files"].items():
        out.print(f"  {name:20} {info['sha256']}", markup=False)
    checks = manifest["summary"]
    out.print(
        f"chain: {'intact' if checks['chain_ok'] else 'BROKEN'}; proposal's events recomputed: "
        f"{'ok' if checks['events_ok'] else 'MISMATCH'}; replay: "
        f"{'ok' if checks['replay_ok'] else 'FAILED'}; signatures: {checks['signatures_valid']}/"
        f"{checks['signatures']} valid",
        markup=False,
    )

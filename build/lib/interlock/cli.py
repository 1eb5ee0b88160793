"""The `interlock` command: run the stack, propose, decide, inspect.

Every command that prints for people also takes `--json`. Errors are one line on stderr and a
non-zero exit code (2 for refused input), never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from interlock.contracts import Signal
from interlock.dedup import DedupUnsettled
from interlock.models import Channel, DecisionInput, ProposalState
from interlock.policy import PolicyError, load_policy
from interlock.proposals import (
    DecisionRefused,
    ProposalConflict,
    ProposalInvalid,
    ProposalNotFound,
)
from interlock.settings import Settings
from interlock.temporal import TemporalUnavailable
from interlock.untrusted import plain

app = typer.Typer(
    name="interlock",
    help="Human-in-the-loop remediation approval engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="The local lab: real services, releases and groups to remediate.")
policy_app = typer.Typer(help="The governance policy file.")
app.add_typer(lab_app, name="lab")
app.add_typer(policy_app, name="policy")


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
    from interlock.config_cli import config_app

    app.add_typer(config_app, name="config")
    from interlock.db_cli import db_app

    app.add_typer(db_app, name="db")
    from interlock.tracing import trace_command

    app.command(name="trace")(trace_command)
    from interlock.autonomy_cli import baseline_app, report_command, scorecard_command

    app.command(name="scorecard")(scorecard_command)
    app.add_typer(baseline_app, name="baseline")
    app.command(name="report")(report_command)


_mount_optional()

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def settings() -> Settings:
    from interlock.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body, turning known failures into one-line errors."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except ProposalInvalid as exc:
        for line in exc.errors:
            err.print(f"error: {line}", markup=False)
        raise typer.Exit(2) from None
    except (ProposalConflict, DecisionRefused, UsageError) as exc:
        fail(str(exc), 2)
    except PolicyError as exc:
        fail(str(exc), 2)
    except ProposalNotFound as exc:
        fail(str(exc), 1)
    except TemporalUnavailable as exc:
        fail(str(exc), 3)
    except TimeoutError as exc:
        fail(str(exc) or "timed out", 1)
    except DedupUnsettled as exc:
        fail(f"{exc}; retry", 1)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# --- Stack -------------------------------------------------------------------------------


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
) -> None:
    """Start the embedded stack: Temporal dev server, worker, lab, HTTP intake. Ctrl-C stops it all."""
    from interlock.api import ApiServeError, ApiSettings
    from interlock.stack import run_stack

    s = settings()
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
        run(lambda: run_stack(s, port=port, ui_port=ui_port, external=external, console=out, api=api))
    except ApiServeError as exc:
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


# --- Proposals ---------------------------------------------------------------------------


@app.command()
def propose(
    file: Annotated[str, typer.Argument(help="Proposal JSON file, or - for stdin.")],
    json_out: JsonFlag = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Return once started, before the checks finish.")
    ] = False,
) -> None:
    """Submit a proposal. Invalid proposals are refused (exit 2) before anything starts."""
    from interlock.proposals import parse_proposal, submit, wait_until_settled
    from interlock.temporal import connect

    s = settings()
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", 2)

    async def body() -> None:
        policy = load_policy(s.effective_policy_file)
        proposal = parse_proposal(text, policy)
        client = await connect(s)
        sub = await submit(client, proposal, s.task_queue, policy, channel=Channel.CLI)
        # A duplicate has no workflow of its own: what happens next is the open proposal's.
        followed = sub.duplicate_of or sub.proposal_id
        result: dict[str, Any] = {
            "proposal_id": sub.proposal_id,
            "status": "submitted",
            "created": sub.created,
            "duplicate_of": sub.duplicate_of,
        }
        if not no_wait:
            state = await wait_until_settled(client, followed)
            result |= {
                "status": state.status.value,
                "risk": state.risk.model_dump(mode="json") if state.risk else None,
                "reasons": state.reasons,
            }
        if json_out:
            print_json(result)
            return
        if sub.duplicate_of:
            out.print(
                f"{sub.proposal_id}  attached as a duplicate to open proposal {sub.duplicate_of} "
                "(same problem: no second approval needed)"
            )
            out.print(f"{sub.duplicate_of}  {result['status']}")
        else:
            note = "" if sub.created else " (already submitted; same proposal)"
            out.print(f"{result['proposal_id']}  {result['status']}{note}")
        if result.get("risk"):
            risk = result["risk"]
            out.print(f"risk {risk['score']}/100 ({risk['tier']})")
        for reason in result.get("reasons") or []:
            out.print(Text(f"  - {plain(reason)}"))
        if result["status"] == "awaiting_approval":
            out.print(
                f"next: interlock show {followed}   |   "
                f'interlock approve {followed} --as alice --reason "..."'
            )

    run(body)


@app.command()
def example(
    action: Annotated[
        str, typer.Argument(help="restart_service, rollback_deployment or change_access")
    ] = "restart_service",
    proposal_id: Annotated[str, typer.Option("--id", help="proposal_id to use.")] = "prop-0001",
    service: Annotated[str, typer.Option(help="Target service.")] = "checkout-api",
    release: Annotated[str | None, typer.Option(help="Release for rollback_deployment.")] = None,
) -> None:
    """Print an example proposal with a fresh observed_at (pipe it to `interlock propose -`)."""
    from interlock.examples import PARAMETERS, example_proposal

    if action not in PARAMETERS:
        fail(f"unknown action {action!r} (known: {', '.join(PARAMETERS)})", 2)
    params = dict(PARAMETERS[action])
    if release is not None:
        params["release"] = release
    print_json(example_proposal(action, proposal_id, service, params))


@app.command(name="list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only proposals with this status.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """List proposals (newest first)."""
    from interlock.proposals import list_proposals
    from interlock.temporal import connect

    s = settings()

    async def body() -> None:
        client = await connect(s)
        try:
            rows = await list_proposals(client, status)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if json_out:
            print_json(rows)
            return
        out.print(proposals_table(rows, out))

    run(body)


LIST_COLUMNS = ("proposal", "status", "action", "service", "risk", "recommender", "submitted")


def proposals_table(rows: list[dict[str, Any]], console: Console) -> Table:
    """The proposals as a wide table, or, where that does not fit the terminal, the same cells
    stacked two to a column (an 80-column terminal shows every value whole)."""
    from interlock.tables import natural_width, stacked

    # Text cells: a string cell would be read as rich markup, and the service is the
    # recommender's own words until the checks find it in the catalog.
    cells = [
        [
            plain(value or "")
            for value in (
                r["proposal_id"],
                r["status"],
                r["action"],
                r["service"],
                r["risk_tier"],
                r["recommender"],
                (r["submitted_at"] or "")[:19].replace("T", " "),
            )
        ]
        for r in rows
    ]
    wide = Table(*LIST_COLUMNS)
    for row in cells:
        wide.add_row(*(Text(c) for c in row))
    if natural_width(console, wide) <= console.width:
        return wide
    # proposal | status / risk | action / service | submitted / recommender
    return stacked(
        [("proposal",), ("status", "risk"), ("action", "service"), ("submitted", "by")],
        # to the minute: the seconds are in the wide table and in --json
        [[(c[0],), (c[1], c[4]), (c[2], c[3]), (c[6][:16], c[5])] for c in cells],
    )


@app.command()
def show(proposal_id: str, json_out: JsonFlag = False) -> None:
    """Everything about one proposal: evidence, risk factors, preview, decisions, timeline."""
    from interlock.proposals import get_state
    from interlock.temporal import connect
    from interlock.tracing import proposal_trace_ids

    s = settings()

    async def body() -> None:
        client = await connect(s)
        state = await get_state(client, proposal_id)
        traces = await asyncio.to_thread(proposal_trace_ids, s, proposal_id)
        if json_out:
            print_json({**state.model_dump(mode="json"), "trace_ids": traces})
        else:
            render_state(state, s)
            if traces:
                out.print(f"\nTrace: {', '.join(traces)}  (interlock trace {proposal_id})", markup=False)

    run(body)


def governance_of(state: ProposalState, s: Settings) -> Any:
    """The proposal's governance as the local policy file gives it, or None when that file is
    not the policy version the proposal is governed by (then only what is missing is shown)."""
    from datetime import UTC, datetime

    from interlock.governance import Governance

    if state.service is None or state.policy_version is None:
        return None
    try:
        policy = load_policy(s.effective_policy_file)
        if policy.version_id != state.policy_version:
            return None
        p = state.proposal
        return Governance.from_policy(
            policy, p.action, p.target.environment, state.service.canonical, p.recommender, datetime.now(UTC)
        )
    except (PolicyError, KeyError):
        return None


def render_state(state: ProposalState, s: Settings | None = None) -> None:
    from interlock.presentation import approval_details

    gov = governance_of(state, s) if s is not None else None
    # Text objects: rich applies neither markup nor emoji codes to them, and approval_details
    # has already removed every escape sequence from what came from outside.
    in_code = False
    for line in approval_details(state, markdown=False, gov=gov).splitlines():
        # Prose wraps at word boundaries to the terminal's width; commands and code (a diff)
        # stay whole, so they can be copied as they are.
        if line.startswith("```"):
            in_code = not in_code
        whole = in_code or line.startswith(("```", "    interlock "))
        out.print(Text(line), soft_wrap=whole)
    if state.execution or state.verification or state.rollback:
        out.print(Text("\n### Execution"))
        for result in (
            state.execution,
            state.verification,
            state.rollback,
            state.rollback_verification,
        ):
            if result is None:
                continue
            out.print(
                Text(
                    plain(
                        f"- {result.stage.value}: {result.playbook} {result.status} (rc {result.rc})"
                        + (f": {result.error}" if result.error else "")
                    )
                )
            )
            for task in result.tasks:
                host = f"{task.host}: " if task.host else ""
                out.print(Text(plain(f"    {task.status:9} {host}{task.task}")))
    if state.execution and state.execution.batches:
        from interlock.presentation import batch_lines

        out.print(Text("\n### Batches"))
        for line in batch_lines(state.execution.batches, markdown=False):
            out.print(Text(plain(line)))
    out.print(Text("\n### Timeline"))
    for entry in state.timeline:
        note = f"  {entry.note}" if entry.note else ""
        out.print(Text(plain(f"- {entry.at.isoformat(timespec='seconds')} {entry.status.value}{note}")))


def _decide(
    decision: str,
    proposal_id: str,
    user: str | None,
    reason: str,
    token: str | None,
    json_out: bool,
) -> None:
    from interlock.keys import key_path
    from interlock.proposals import decide, sign_decision
    from interlock.temporal import connect

    s = settings()
    if not user and not token:
        fail("give --as USER or --token TOKEN", 2)

    async def body() -> None:
        client = await connect(s)
        tok = token
        if tok is None and user and key_path(s.keys_dir, user).exists():
            # Sign with the approver's own key: the approval is bound to this exact plan.
            tok = await sign_decision(
                client, s.keys_dir, proposal_id, decision, user, reason, token_lifetime(s, None)
            )
        inp = DecisionInput(approver=user or "", reason=reason, token=tok)
        result = await decide(client, proposal_id, decision, inp)
        if json_out:
            print_json(result.model_dump(mode="json") | {"signed": tok is not None})
        else:
            how = "signed" if tok else "UNSIGNED"
            out.print(f"{proposal_id}  {decision}d by {result.approver} ({how}); now {result.status.value}")

    run(body)


AsOption = Annotated[str | None, typer.Option("--as", help="Approver (must be in the policy's roster).")]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="A signed token made with `interlock sign`.")
]


@app.command()
def approve(
    proposal_id: str,
    as_: AsOption = None,
    reason: Annotated[str, typer.Option(help="Why you approve.")] = "",
    token: TokenOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Approve a proposal (signed with your key when you have one)."""
    _decide("approve", proposal_id, as_, reason, token, json_out)


@app.command()
def reject(
    proposal_id: str,
    as_: AsOption = None,
    reason: Annotated[str, typer.Option(help="Why you reject (required).")] = "",
    token: TokenOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Reject a proposal that is awaiting approval."""
    _decide("reject", proposal_id, as_, reason, token, json_out)


@app.command()
def sign(
    proposal_id: str,
    as_: Annotated[str, typer.Option("--as", help="Whose key signs.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    decision: Annotated[str, typer.Option(help="approve or reject.")] = "approve",
    lifetime: Annotated[
        str | None,
        typer.Option(
            help="How long the token is valid, e.g. 10m (default and most: the policy's "
            "token_max_lifetime, at most 15m by default)."
        ),
    ] = None,
) -> None:
    """Print a signed token for the Web UI's Update dialog: {"token": "..."}."""
    from interlock.proposals import sign_decision
    from interlock.temporal import connect

    if decision not in ("approve", "reject"):
        fail("--decision must be approve or reject", 2)
    s = settings()
    valid_for = token_lifetime(s, lifetime)

    async def body() -> None:
        client = await connect(s)
        tok = await sign_decision(client, s.keys_dir, proposal_id, decision, as_, reason, valid_for)
        print_json({"token": tok})

    run(body)


def token_lifetime(s: Settings, requested: str | None) -> timedelta:
    """How long a token made here is valid: `requested`, refused when longer than the policy's
    `token_max_lifetime` (the validator would refuse the token); by default the shorter of 15
    minutes and that limit."""
    from interlock.policy import parse_duration
    from interlock.signing import DEFAULT_TOKEN_LIFETIME, describe_lifetime

    try:
        limit = load_policy(s.effective_policy_file).token_max_lifetime
    except PolicyError as exc:
        fail(str(exc), 2)
    if requested is None:
        return min(DEFAULT_TOKEN_LIFETIME, limit)
    try:
        wanted = parse_duration(requested)
    except ValueError as exc:
        fail(f"--lifetime: {exc}", 2)
    if wanted > limit:
        fail(
            f"--lifetime {requested} is longer than the policy's token_max_lifetime of "
            f"{describe_lifetime(limit)}: the approval would be refused (lifetime check)",
            2,
        )
    return wanted


keys_app = typer.Typer(help="Approver signing keys (Ed25519).")
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(user: str) -> None:
    """Make USER's key pair under the state folder and print the public key for the policy."""
    from interlock.keys import write_key

    s = settings()
    public = write_key(s.keys_dir, user)
    out.print(f"private key: {s.keys_dir / (user + '.key')} (keep it on the approver's machine)")
    out.print(f'policy roster entry:  {user}: {{groups: [...], public_key: "{public}"}}')


def _scope(all_: bool, action: str | None, recommender: str | None, service: str | None) -> Any:
    from interlock.models import PauseScope

    chosen = [x for x in (all_, action, recommender, service) if x]
    if len(chosen) != 1:
        fail("give exactly one of --all, --action, --recommender, --service", 2)
    return PauseScope(all=all_, action=action, recommender=recommender, service=service)


def _scope_query(scope: Any) -> str:
    from interlock import search

    if scope.all:
        return ""
    for key, value in (
        (search.SA_ACTION, scope.action),
        (search.SA_RECOMMENDER, scope.recommender),
        (search.SA_SERVICE, scope.service),
    ):
        if value:
            return f"{key.name} = '{value}'"
    return ""


@app.command()
def pause(
    all_: Annotated[bool, typer.Option("--all", help="Pause everything.")] = False,
    action: Annotated[str | None, typer.Option(help="Pause one action.")] = None,
    recommender: Annotated[str | None, typer.Option(help="Pause one recommender.")] = None,
    service: Annotated[str | None, typer.Option(help="Pause one service.")] = None,
    reason: Annotated[str, typer.Option(help="Why (required).")] = "",
    abort_running: Annotated[
        bool, typer.Option("--abort-running", help="Cancel running playbooks and roll back.")
    ] = False,
    list_: Annotated[bool, typer.Option("--list", help="List active pauses.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Kill switch: proposals in scope keep collecting decisions but do not execute."""
    import getpass
    from datetime import UTC, datetime

    from interlock.models import Pause
    from interlock.pauses import PauseStore, database_url
    from interlock.proposals import broadcast
    from interlock.temporal import connect

    s = settings()
    store = PauseStore(database_url(s))
    if list_:
        pauses = store.active()
        if json_out:
            print_json([p.model_dump(mode="json") for p in pauses])
            return
        table = Table("scope", "by", "since", "reason", "abort running")
        for p in pauses:
            table.add_row(
                p.scope.describe(),
                p.by,
                p.at.isoformat(timespec="seconds"),
                p.reason,
                "yes" if p.abort_running else "no",
            )
        out.print(table)
        return
    scope = _scope(all_, action, recommender, service)
    if not reason.strip():
        fail("--reason is required", 2)
    record = Pause(
        scope=scope,
        reason=reason,
        by=getpass.getuser(),
        at=datetime.now(UTC),
        abort_running=abort_running,
    )
    store.add(record)

    async def body() -> None:
        client = await connect(s)
        n = await broadcast(client, Signal.PAUSE, record, _scope_query(scope))
        if json_out:
            print_json({"paused": scope.describe(), "signalled": n})
        else:
            out.print(f"paused {scope.describe()}: {n} open proposal(s) signalled")

    run(body)


@app.command()
def resume(
    all_: Annotated[bool, typer.Option("--all", help="Resume everything.")] = False,
    action: Annotated[str | None, typer.Option(help="Resume one action.")] = None,
    recommender: Annotated[str | None, typer.Option(help="Resume one recommender.")] = None,
    service: Annotated[str | None, typer.Option(help="Resume one service.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """End a pause with the same scope; held proposals continue."""
    import getpass

    from interlock.pauses import PauseStore, database_url
    from interlock.proposals import broadcast
    from interlock.temporal import connect

    s = settings()
    scope = _scope(all_, action, recommender, service)
    ended = PauseStore(database_url(s)).resume(scope, getpass.getuser())

    async def body() -> None:
        client = await connect(s)
        n = await broadcast(client, Signal.RESUME, scope, _scope_query(scope))
        if json_out:
            print_json({"resumed": scope.describe(), "pauses_ended": ended, "signalled": n})
        else:
            out.print(f"resumed {scope.describe()}: {ended} pause(s) ended, {n} proposal(s) signalled")

    run(body)


# --- Lab ---------------------------------------------------------------------------------


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


# --- Policy ------------------------------------------------------------------------------


@policy_app.command("check")
def policy_check(file: Path, json_out: JsonFlag = False) -> None:
    """Validate a policy file; every error is reported with its path. Exit 2 if invalid."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        if json_out:
            print_json({"valid": False, "errors": exc.errors})
        else:
            for line in exc.errors:
                err.print(f"error: {file}: {line}", markup=False)
        raise typer.Exit(2) from None
    warnings = policy.warnings()
    if json_out:
        print_json({"valid": True, "version": policy.version_id, "warnings": warnings})
    else:
        for line in warnings:
            err.print(f"warning: {file}: {line}", markup=False)
        out.print(f"{file}: valid (version {policy.version_id})")


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


if __name__ == "__main__":
    main()

"""Proposals: submit, list and read them (`propose`, `example`, `list`, `show`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from interlock.cli.common import JsonFlag, UsageError, app, fail, out, print_json, run, settings
from interlock.models import Channel, PlaybookResult, ProposalState
from interlock.policy import PolicyError, load_policy
from interlock.settings import Settings
from interlock.untrusted import plain


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
        sub = await submit(
            client, proposal, s.task_queue, policy, channel=Channel.CLI, claims_namespace=s.claims_namespace
        )
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
        str, typer.Argument(help="An action of the policy in force (`interlock policy check` lists them).")
    ] = "restart_service",
    proposal_id: Annotated[str, typer.Option("--id", help="proposal_id to use.")] = "prop-0001",
    service: Annotated[
        str | None, typer.Option(help="Target service (default: checkout-api, else the catalog's first).")
    ] = None,
    environment: Annotated[
        str | None, typer.Option(help="Target environment (default: the service's first).")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Narrow target.hosts to this catalog host (repeatable)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="NAME=VALUE, one of the action's allowed values (repeatable)."),
    ] = None,
    release: Annotated[str | None, typer.Option(help="Same as --param release=VALUE.")] = None,
    incident: Annotated[str, typer.Option(help="Incident the proposal is for.")] = "INC-1234",
) -> None:
    """Print an example proposal for any action of the policy in force, with a fresh observed_at
    (pipe it to `interlock propose -`)."""
    from interlock.examples import ExampleError, example_proposal

    s = settings()
    try:
        policy = load_policy(s.effective_policy_file)
    except PolicyError as exc:
        fail(str(exc), 2)
    chosen: dict[str, str] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--param {item!r}: expected NAME=VALUE", 2)
        chosen[name.strip()] = value.strip()
    if release is not None:
        chosen["release"] = release
    try:
        doc = example_proposal(
            action,
            proposal_id,
            service,
            policy=policy,
            environment=environment,
            hosts=host or None,
            choose=chosen,
            incident=incident,
            strict=True,
        )
    except ExampleError as exc:
        fail(str(exc), 2)
    print_json(doc)


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


def print_run(result: PlaybookResult, indent: str = "") -> None:
    """One playbook run: its stage, playbook and outcome, then one line per task and host."""
    out.print(
        Text(
            plain(
                f"{indent}- {result.stage.value}: {result.playbook} {result.status} (rc {result.rc})"
                + (f": {result.error}" if result.error else "")
            )
        )
    )
    for task in result.tasks:
        host = f"{task.host}: " if task.host else ""
        out.print(Text(plain(f"{indent}    {task.status:9} {host}{task.task}")))


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
    batches = state.execution.batches if state.execution else []
    if batches:
        # A rollout: each batch's own runs, under the per-host summary above ("Rollout, batch by
        # batch"). Not the proposal-wide execution: that aggregate cannot say which stage failed.
        out.print(Text("\n### Runs, batch by batch"))
        for batch in batches:
            out.print(
                Text(plain(f"- batch {batch.index + 1}: {', '.join(batch.hosts)}: {batch.status.value}"))
            )
            runs = (batch.execution, batch.verification, batch.rollback, batch.rollback_verification)
            for result in runs:
                if result is not None:
                    print_run(result, indent="  ")
    elif state.execution or state.verification or state.rollback:
        out.print(Text("\n### Execution"))
        for result in (state.execution, state.verification, state.rollback, state.rollback_verification):
            if result is not None:
                print_run(result)
    out.print(Text("\n### Timeline"))
    for entry in state.timeline:
        note = f"  {entry.note}" if entry.note else ""
        out.print(Text(plain(f"- {entry.at.isoformat(timespec='seconds')} {entry.status.value}{note}")))

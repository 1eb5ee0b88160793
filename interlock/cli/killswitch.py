"""The kill switch: `pause` and `resume` by scope."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from interlock.cli.common import JsonFlag, app, fail, out, print_json, run, settings
from interlock.contracts import Signal


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

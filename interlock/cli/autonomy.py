"""The earned-autonomy commands: `interlock scorecard`, `interlock baseline import` and
`interlock report --html`.

Every figure comes from the audit store's SQL; errors are one line on stderr (exit 2 for bad input).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from interlock.audit.cli import JsonFlag, _cells, _ratio, _seconds, opened_store, parse_duration
from interlock.console import fail, print_json
from interlock.tables import natural_width, transposed

if TYPE_CHECKING:
    from interlock.audit.store import AuditStore
    from interlock.policy import Policy

baseline_app = typer.Typer(help="How incidents went before the pilot (an ITSM export).", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """`--since`: a duration back from now (7d, 24h) or a date or time (2026-03-01)."""
    if text is None:
        return None
    if DATE.match(text.strip()):
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since: {text!r} is not a date (use 2026-03-01 or 7d)") from None
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return now - parse_duration(text)


def _policy() -> Policy:
    from interlock.policy import PolicyError, load_policy
    from interlock.settings import Settings

    try:
        return load_policy(Settings().effective_policy_file)
    except PolicyError as exc:
        fail(str(exc), 2)


def start_modes(policy: Policy) -> dict[str, str]:
    """The mode each action's proposals count as submitted in before any mode change."""
    from interlock.autonomy import start_mode

    modes = {name: policy.mode_for(name, "*", "*").mode.value for name in policy.actions}
    for rule in policy.graduation:
        if rule.action in policy.actions:
            modes[rule.action] = start_mode(rule, policy.mode_for(rule.action, "*", "*").mode).value
    return modes


def standings(store: AuditStore, policy: Policy, card: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """Where the pair stands under each graduation rule for its action, and what it still needs."""
    from interlock.audit.standing import figures_of, standing_of
    from interlock.autonomy import ceiling, evaluate, window_start

    found = []
    rules = {r.key: r for r in policy.graduation if r.action in ("*", card["action"])}
    for rule in rules.values():
        top = ceiling(policy, card["action"], rule.environment, rule.service)
        standing = standing_of(store, rule, top, card["recommender"], card["model_version"])
        figures = figures_of(store, rule, standing, card["action"], now)
        verdict = evaluate(rule, top, standing.mode, figures)
        found.append(
            {
                "rule": rule.key,
                "mode": standing.mode.value,
                "ceiling": top.value,
                "new_model_version": standing.seq == 0,
                "since": standing.since.isoformat() if standing.since else None,
                "counted_from": window_start(rule, standing, now).isoformat(),
                "figures": figures.summary(),
                "next_mode": verdict.next_mode.value if verdict.next_mode else None,
                "needs": verdict.needs,
                "would": (
                    f"{verdict.direction} to {verdict.to.value}: {'; '.join(verdict.reasons)}"
                    if verdict.to is not None
                    else None
                ),
            }
        )
    return found


def build_scorecard(
    store: AuditStore,
    policy: Policy,
    *,
    recommender: str | None = None,
    model_version: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    from interlock.audit.baseline import baseline_by_service, combined
    from interlock.audit.metrics import scorecard

    now = now or datetime.now(UTC)
    cards = scorecard(
        store,
        recommender=recommender,
        model_version=model_version,
        action=action,
        since=since,
        start_modes=start_modes(policy),
    )
    sums = baseline_by_service(store)
    overall = combined([sums[None]])
    for card in cards:
        matched = [sums[s] for s in card["services"] if s in sums]
        base = combined(matched) if matched else None
        card["baseline"] = base
        for figure in ("mttr_mean_seconds", "first_response_mean_seconds"):
            pilot, before = card[figure], (base or {}).get(figure)
            card[f"{figure.removesuffix('_mean_seconds')}_vs_baseline"] = (
                pilot / before if pilot is not None and before else None
            )
        card["standings"] = standings(store, policy, card, now)
    return {
        "generated_at": now.isoformat(),
        "since": since.isoformat() if since else None,
        "policy": policy.version_id,
        "baseline": overall if overall["incidents"] else None,
        "pairs": cards,
    }


def _vs(pilot: float | None, ratio: float | None) -> str:
    text = _seconds(pilot)
    return f"{text} ({ratio:.0%} of baseline)" if ratio is not None else text


def scorecard_command(
    recommender: Annotated[str | None, typer.Option("--recommender", help="One recommender only.")] = None,
    model_version: Annotated[
        str | None, typer.Option("--model-version", help="One model version only.")
    ] = None,
    action: Annotated[str | None, typer.Option("--action", help="One action only.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Proposals submitted since: 7d, 24h or 2026-03-01.")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Each recommender × model version × action: its record, its standing and what it still needs."""
    now = datetime.now(UTC)
    try:
        cutoff = parse_since(since, now)
    except ValueError as exc:
        fail(str(exc), 2)
    policy = _policy()
    with opened_store() as store:
        card = build_scorecard(
            store,
            policy,
            recommender=recommender,
            model_version=model_version,
            action=action,
            since=cutoff,
            now=now,
        )
    if json_out:
        print_json(card)
        return
    if not card["pairs"]:
        out.print("no proposals" + (f" since {cutoff.isoformat()}" if cutoff else ""), markup=False)
        return
    title = "scorecard" + (f", proposals since {cutoff:%Y-%m-%d %H:%M} UTC" if cutoff else "")
    headers = ["recommender", "model", "action", "proposals", "refused", "approved", "rejected (override)"]
    headers += ["rolled back", "unresolved", "false rec.", "MTTR", "1st response", "escalated", "exceptions"]
    headers += ["shadow: clean", "shadow: person acted", "mode", "still needs"]
    rows: list[list[str]] = []
    for c in card["pairs"]:
        standing = c["standings"][0] if c["standings"] else None
        mode = (
            standing["mode"] + (" (new)" if standing["new_model_version"] else "") if standing else "policy"
        )
        needs = "; ".join(standing["needs"]) if standing else ""
        if standing and standing["would"]:
            needs = f"at next final: {standing['would']}"
        rows.append(
            [
                c["recommender"] or "",
                c["model_version"] or "",
                c["action"] or "",
                str(c["proposals"]),
                _ratio(c["refused_by_checks_share"]),
                str(c["approved"]),
                f"{c['rejected']} ({_ratio(c['override_rate'])})",
                str(c["rolled_back"]),
                str(c["completed_unresolved"]),
                _ratio(c["false_recommendation_rate"]),
                _vs(c["mttr_mean_seconds"], c["mttr_vs_baseline"]),
                _vs(c["first_response_mean_seconds"], c["first_response_vs_baseline"]),
                str(c["escalated"]),
                str(c["audit_exceptions"]),
                _ratio(c["shadow_confirmed_share"]),
                _ratio(c["shadow_human_acted_share"]),
                mode,
                needs,
            ]
        )
    table = Table(title=title)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 3 or i >= 16 else "right", overflow="fold")
    for row in rows:
        table.add_row(*_cells(*row))
    if natural_width(out, table) > out.width:
        # Narrow terminal: one column per recommender x model x action, one row per figure.
        labels = [[" ".join(r[:3]), *r[3:]] for r in rows]
        for part in transposed(title, ["figure", *headers[3:]], labels, out.width):
            out.print(part)
    else:
        out.print(table)
    if card["baseline"]:
        b = card["baseline"]
        out.print(
            f"baseline: {b['incidents']} incidents, MTTR {_seconds(b['mttr_mean_seconds'])}, first response "
            f"{_seconds(b['first_response_mean_seconds'])} (means)",
            markup=False,
        )


@baseline_app.command("import")
def baseline_import(
    file: Annotated[
        Path, typer.Argument(help="CSV: incident type/service, opened, resolved, first response.")
    ],
    json_out: JsonFlag = False,
) -> None:
    """Import an ITSM export of past incidents; the scorecard compares the pilot with it."""
    from interlock.audit.baseline import BaselineError, import_baseline, parse_baseline

    try:
        text = file.read_text(encoding="utf-8-sig")  # Excel's exports start with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot read: {getattr(exc, 'strerror', None) or exc}", 2)
    try:
        incidents = parse_baseline(text)
    except BaselineError as exc:
        fail(f"{file}: {exc}", 2)
    with opened_store() as store:
        new = import_baseline(store, incidents, file.name)
    if json_out:
        print_json({"file": str(file), "incidents": len(incidents), "imported": new})
        return
    out.print(f"{file}: {new} incident(s) imported, {len(incidents) - new} already there", markup=False)


def report_command(
    html: Annotated[Path, typer.Option("--html", help="Write a self-contained HTML report here.")],
    since: Annotated[
        str | None, typer.Option("--since", help="Proposals submitted since: 30d or a date.")
    ] = None,
    bucket: Annotated[str, typer.Option("--bucket", help="Chart resolution: 1h, 1d, 7d.")] = "1d",
) -> None:
    """A governance report for a team lead or an auditor: the figures over time per recommender and
    model version, the mode history and the baseline comparison, readable offline."""
    from interlock.audit.metrics import figures_over_time, mode_changes
    from interlock.autonomy_report import render_report

    now = datetime.now(UTC)
    try:
        cutoff = parse_since(since, now)
        width = parse_duration(bucket)
    except ValueError as exc:
        fail(str(exc), 2)
    policy = _policy()
    with opened_store() as store:
        card = build_scorecard(store, policy, since=cutoff, now=now)
        series = figures_over_time(store, width, cutoff)
        history = mode_changes(store)
    text = render_report(card, series, history, bucket_seconds=width.total_seconds())
    try:
        html.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{html}: cannot write: {exc.strerror or exc}", 2)
    out.print(
        f"report written to {html} ({len(card['pairs'])} pair(s), {len(history)} mode change(s))",
        markup=False,
    )

"""Operational metrics of the approval process, computed by the database from the audit trail.

Everything is SQL aggregates (GROUP BY, window functions) that SQLite and PostgreSQL both run;
rows are never loaded into Python. A window (`since`) selects the proposals submitted in it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    case,
    func,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from interlock.audit.events import (
    FALSE_RECOMMENDATION_STATUSES,
    FINAL_STATUSES,
    UNJUDGED_STATUSES,
    EventKind,
)
from interlock.audit.store import TABLE, AuditStoreError, one_line

if TYPE_CHECKING:
    from interlock.audit.store import AuditStore

GroupBy = Literal["recommender", "model", "action", "channel"]
GROUP_COLUMNS: dict[str, str] = {
    "recommender": "recommender",
    "model": "model_version",
    "action": "action",
    "channel": "channel",
}
# Groups that are no column: the submitted event's data says how the proposal arrived
# (http, sdk, mcp, cli); events from before it was recorded count as "unknown".
_DATA_GROUPS = frozenset({"channel"})


class epoch(FunctionElement[float]):
    """Seconds since 1970 of a timestamp column, on either database."""

    type = Float()
    inherit_cache = True


@compiles(epoch, "postgresql")
def _epoch_pg(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # date_part gives double precision; EXTRACT gives numeric, several times slower to sort.
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # The stored text is "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UtcDateTime): whole seconds from
    # strftime, microseconds from characters 21-26. julianday() would round to milliseconds.
    value = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {value}) AS INTEGER) + CAST(substr({value}, 21, 6) AS INTEGER) / 1000000.0)"


class json_text(FunctionElement[str]):
    """A top-level string field of a JSON column, with the key written inline.

    Inline (not a bind parameter) so PostgreSQL can match the partial indexes built on it.
    """

    type = String()
    inherit_cache = True
    # The key is part of the SQL text, so it must be part of the compiled-SQL cache key too.
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("key", InternalTraversal.dp_string),
    ]

    def __init__(self, column: Any, key: str):
        self.key = key
        super().__init__(column)


@compiles(json_text, "postgresql")
def _json_text_pg(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} ->> '{element.key}')"


@compiles(json_text, "sqlite")
def _json_text_sqlite(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.{element.key}')"


class json_flag(json_text):
    """A top-level boolean field of a JSON column (NULL when absent)."""

    type = Boolean()  # type: ignore[assignment]
    inherit_cache = True


@compiles(json_flag, "postgresql")
def _json_flag_pg(element: json_flag, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)} ->> '{element.key}') AS BOOLEAN)"


@compiles(json_flag, "sqlite")
def _json_flag_sqlite(element: json_flag, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's json_extract gives 1 and 0 for JSON true and false.
    return f"(json_extract({compiler.process(element.clauses, **kw)}, '$.{element.key}') = 1)"


def _kind(*kinds: EventKind) -> ColumnElement[bool]:
    # Kinds inline too: a partial index's predicate must be provable from the query's text.
    values: list[ColumnElement[Any]] = [literal_column(f"'{k.value}'") for k in kinds]
    return TABLE.c.kind == values[0] if len(values) == 1 else TABLE.c.kind.in_(values)


def _group_value(group: str) -> ColumnElement[Any]:
    if group in _DATA_GROUPS:
        return func.coalesce(json_text(TABLE.c.data, group), literal_column("'unknown'"))
    return TABLE.c[group]


def _per_proposal(group: str | None, cutoff: datetime | None) -> Any:
    """One row per submitted proposal: when it was submitted, ended and first decided by a person.

    Each part reads one partial covering index (see the migration), so PostgreSQL answers from
    index-only scans instead of the table.
    """
    e = TABLE.c
    submitted, final = _kind(EventKind.SUBMITTED), _kind(EventKind.FINAL)
    grp = func.min(_group_value(group)).filter(submitted) if group else null()
    lifecycle = (
        select(
            e.proposal_id,
            func.min(e.at).filter(submitted).label("submitted_at"),
            grp.label("grp"),
            func.min(e.at).filter(final).label("final_at"),
            # A proposal ends once (its final event id is deterministic), so max() is its status.
            func.max(e.status).filter(final).label("final_status"),
            func.count().filter(_kind(EventKind.ESCALATED)).label("escalated"),
        )
        .where(_kind(EventKind.SUBMITTED, EventKind.FINAL, EventKind.ESCALATED))
        .group_by(e.proposal_id)
    )
    human = and_(_kind(EventKind.DECISION), json_flag(e.data, "human"))
    decisions = select(
        e.proposal_id,
        func.min(e.at).label("first_human_at"),
        func.count().label("human_decisions"),
    ).where(human)
    rejections = select(e.proposal_id, func.count().label("human_rejections")).where(
        human, json_text(e.data, "decision") == literal_column("'reject'")
    )
    if cutoff is not None:
        # Only the window's proposals: a short window then reads a short stretch of history.
        recent = select(e.proposal_id).where(submitted, e.at >= cutoff)
        lifecycle = lifecycle.where(e.proposal_id.in_(recent))
        decisions = decisions.where(e.proposal_id.in_(recent))
        rejections = rejections.where(e.proposal_id.in_(recent))
    lifecycle_q = lifecycle.subquery("lifecycle")
    decisions_q = decisions.group_by(e.proposal_id).subquery("decisions")
    rejections_q = rejections.group_by(e.proposal_id).subquery("rejections")
    return (
        select(
            lifecycle_q.c.proposal_id,
            lifecycle_q.c.submitted_at,
            lifecycle_q.c.grp,
            lifecycle_q.c.final_at,
            lifecycle_q.c.final_status,
            lifecycle_q.c.escalated,
            decisions_q.c.first_human_at,
            func.coalesce(decisions_q.c.human_decisions, 0).label("human_decisions"),
            func.coalesce(rejections_q.c.human_rejections, 0).label("human_rejections"),
        )
        .select_from(
            lifecycle_q.outerjoin(
                decisions_q, decisions_q.c.proposal_id == lifecycle_q.c.proposal_id
            ).outerjoin(rejections_q, rejections_q.c.proposal_id == lifecycle_q.c.proposal_id)
        )
        .where(lifecycle_q.c.submitted_at.is_not(None))
        .cte("per_proposal")
    )


def _levels(per_proposal: Any, grouped: bool) -> Any:
    """The proposals once overall (level 0) and, with a grouping, once more per group (level 1).

    Both levels come out of one statement, so the proposals are gathered only once.
    """
    columns = [c for c in per_proposal.c if c.name != "grp"]
    overall = select(literal_column("0").label("level"), null().label("grp"), *columns)
    if not grouped:
        return overall.cte("levels")
    by_group = select(literal_column("1"), per_proposal.c.grp, *columns)
    return union_all(overall, by_group).cte("levels")


def _median(p: Any, value: ColumnElement[Any], where: ColumnElement[bool]) -> Any:
    """Median of `value` per level and group: the middle row, or the mean of the two middle rows.

    For SQLite, which has no percentile aggregate.
    """
    partition = [p.c.level, p.c.grp]
    ranked = (
        select(
            p.c.level,
            p.c.grp,
            value.label("v"),
            func.row_number().over(partition_by=partition, order_by=value).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(where)
        .subquery()
    )
    return (
        select(ranked.c.level, ranked.c.grp, func.avg(ranked.c.v).label("median"))
        .where(or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2))
        .group_by(ranked.c.level, ranked.c.grp)
        .subquery()
    )


def _aggregates(p: Any, dialect: str) -> list[ColumnElement[Any]]:
    """The per-group figures over per-proposal rows `p`."""
    completed = p.c.final_status == literal_column("'completed'")
    resolution = epoch(p.c.final_at) - epoch(p.c.submitted_at)
    response = epoch(p.c.first_human_at) - epoch(p.c.submitted_at)
    open_ = p.c.final_at.is_(None)
    false_statuses: list[ColumnElement[Any]] = [
        literal_column(f"'{s}'") for s in sorted(FALSE_RECOMMENDATION_STATUSES)
    ]
    columns: list[ColumnElement[Any]] = [
        func.count().label("proposals"),
        func.count(p.c.final_at).label("finals"),
        func.count().filter(completed).label("completed"),
        func.avg(resolution).filter(completed).label("mttr_mean_seconds"),
        func.count(p.c.first_human_at).label("responded"),
        func.avg(response).label("first_response_mean_seconds"),
        func.count().filter(open_).label("backlog"),
        func.min(epoch(p.c.submitted_at)).filter(open_).label("oldest_open_epoch"),
        func.sum(p.c.human_decisions).label("human_decisions"),
        func.sum(p.c.human_rejections).label("human_rejections"),
        func.count().filter(p.c.final_status.in_(false_statuses)).label("false_recommendations"),
        func.count()
        .filter(p.c.final_status.in_([literal_column(f"'{s}'") for s in sorted(UNJUDGED_STATUSES)]))
        .label("unjudged"),
        func.count().filter(p.c.escalated > 0).label("escalated"),
    ]
    if dialect == "postgresql":
        # PostgreSQL has the median as an aggregate: one sort inside the GROUP BY.
        columns += [
            func.percentile_cont(0.5).within_group(resolution).filter(completed).label("mttr_median_seconds"),
            func.percentile_cont(0.5)
            .within_group(response)
            .filter(p.c.first_human_at.is_not(None))
            .label("first_response_median_seconds"),
        ]
    return columns


def _proposal_query(group: str | None, cutoff: datetime | None, dialect: str) -> Select[Any]:
    """Rows (level, grp, figures...): level 0 is overall, level 1 one row per group."""
    per_proposal = _per_proposal(group, cutoff)
    if dialect == "postgresql":
        p = per_proposal
        if group is None:
            return select(literal_column("0").label("level"), null().label("grp"), *_aggregates(p, dialect))
        # One pass yields the overall row (the empty grouping set) and the per-group rows.
        level = (1 - func.grouping(p.c.grp)).label("level")
        return select(level, p.c.grp, *_aggregates(p, dialect)).group_by(
            func.grouping_sets(tuple_(p.c.grp), tuple_())
        )

    # SQLite has neither grouping sets nor a median aggregate: the proposals are listed once
    # per level, and medians come from window functions.
    p = _levels(per_proposal, grouped=group is not None)
    totals = select(p.c.level, p.c.grp, *_aggregates(p, dialect)).group_by(p.c.level, p.c.grp)
    totals_q = totals.subquery()
    completed = p.c.final_status == literal_column("'completed'")
    mttr = _median(p, epoch(p.c.final_at) - epoch(p.c.submitted_at), completed)
    first = _median(p, epoch(p.c.first_human_at) - epoch(p.c.submitted_at), p.c.first_human_at.is_not(None))

    def same(median: Any) -> ColumnElement[bool]:
        return and_(median.c.level == totals_q.c.level, median.c.grp.is_not_distinct_from(totals_q.c.grp))

    return select(
        totals_q,
        mttr.c.median.label("mttr_median_seconds"),
        first.c.median.label("first_response_median_seconds"),
    ).select_from(totals_q.outerjoin(mttr, same(mttr)).outerjoin(first, same(first)))


def _exceptions_query(group: str | None, cutoff: datetime | None) -> Select[Any]:
    e = TABLE.c
    where = [_kind(EventKind.SECURITY, EventKind.DECISION_REFUSED, EventKind.AUDIT_EXCEPTION)]
    if cutoff is not None:
        where.append(e.at >= cutoff)
    if group is None or group in _DATA_GROUPS:
        # Exception events carry no channel: they belong to no group.
        grp: ColumnElement[Any] = null().label("grp")
        return select(grp, func.count().label("n")).where(*where)
    return select(e[group].label("grp"), func.count().label("n")).where(*where).group_by(e[group])


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _metrics(row: Any, now: datetime, exceptions: int) -> dict[str, Any]:
    proposals, finals = int(row.proposals or 0), int(row.finals or 0)
    human, rejections = int(row.human_decisions or 0), int(row.human_rejections or 0)
    false, escalated = int(row.false_recommendations or 0), int(row.escalated or 0)
    oldest = row.oldest_open_epoch
    return {
        "proposals": proposals,
        "finals": finals,
        "completed": int(row.completed or 0),
        "mttr_mean_seconds": _float(row.mttr_mean_seconds),
        "mttr_median_seconds": _float(row.mttr_median_seconds),
        "responded": int(row.responded or 0),
        "first_response_mean_seconds": _float(row.first_response_mean_seconds),
        "first_response_median_seconds": _float(row.first_response_median_seconds),
        "backlog": int(row.backlog or 0),
        "backlog_oldest_seconds": (max(0.0, now.timestamp() - float(oldest)) if oldest is not None else None),
        "human_decisions": human,
        "human_rejections": rejections,
        "override_ratio": _ratio(rejections, human),
        "false_recommendations": false,
        # Over the finals that judged the recommendation: preview_failed judged nothing.
        "false_recommendation_ratio": _ratio(false, finals - int(row.unjudged or 0)),
        "escalated": escalated,
        "escalation_ratio": _ratio(escalated, proposals),
        "audit_exceptions": exceptions,
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# The figures of a group with no proposals (or of an empty store).
_NO_PROPOSALS = SimpleNamespace(
    proposals=0,
    finals=0,
    completed=0,
    mttr_mean_seconds=None,
    mttr_median_seconds=None,
    responded=0,
    first_response_mean_seconds=None,
    first_response_median_seconds=None,
    backlog=0,
    oldest_open_epoch=None,
    human_decisions=0,
    human_rejections=0,
    false_recommendations=0,
    unjudged=0,
    escalated=0,
)


def compute_metrics(
    store: AuditStore,
    since: timedelta | None = None,
    by: GroupBy | None = None,
    *,
    extra_exceptions: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The approval process's metrics, overall and (with `by`) per recommender, model, action or
    channel.

    `since` keeps the proposals submitted in that window (and exception events in it).
    `extra_exceptions` adds problems found elsewhere (reconcile, verify) to the audit exceptions;
    they belong to no group. Durations are seconds; a ratio with nothing to divide by is None.
    """
    if by is not None and by not in GROUP_COLUMNS:
        raise ValueError(f"by must be one of {', '.join(GROUP_COLUMNS)}, not {by!r}")
    now = now or datetime.now(UTC)
    cutoff = now - since if since is not None else None
    group = GROUP_COLUMNS[by] if by else None
    try:
        with store.engine.connect() as conn, conn.begin():
            if store.dialect == "postgresql":
                # Enough memory for the median sorts and per-proposal hashes to stay off disk,
                # and no JIT: compiling costs more than it saves on a sub-second query.
                conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
                conn.exec_driver_sql("SET LOCAL jit = off")
            rows = conn.execute(_proposal_query(group, cutoff, store.dialect)).all()
            exception_rows = conn.execute(_exceptions_query(group, cutoff)).all()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc

    exceptions: dict[str | None, int] = {grp: int(n) for grp, n in exception_rows}
    total_exceptions = sum(exceptions.values()) + extra_exceptions
    if extra_exceptions:
        exceptions[None] = exceptions.get(None, 0) + extra_exceptions
    overall = next((row for row in rows if row.level == 0), _NO_PROPOSALS)
    groups: list[dict[str, Any]] = []
    if group is not None:
        by_group = {row.grp: row for row in rows if row.level == 1}
        for grp in sorted(by_group.keys() | exceptions.keys(), key=lambda g: (g is None, g or "")):
            metrics = _metrics(by_group.get(grp, _NO_PROPOSALS), now, exceptions.get(grp, 0))
            groups.append({"group": grp, **metrics})
    return {
        "generated_at": now.isoformat(),
        "since_seconds": since.total_seconds() if since is not None else None,
        "window_start": cutoff.isoformat() if cutoff is not None else None,
        "by": by,
        "overall": _metrics(overall, now, total_exceptions),
        "groups": groups,
    }


# --- Prometheus exposition ---------------------------------------------------------------

_GAUGES = (
    ("interlock_backlog", "backlog", "Proposals submitted and not yet final."),
    (
        "interlock_backlog_oldest_seconds",
        "backlog_oldest_seconds",
        "Age of the oldest proposal not yet final.",
    ),
    ("interlock_override_ratio", "override_ratio", "Human decisions that were rejections."),
    (
        "interlock_false_recommendation_ratio",
        "false_recommendation_ratio",
        "Final proposals rejected, rejected by checks, rolled back or left unresolved.",
    ),
    ("interlock_escalation_ratio", "escalation_ratio", "Submitted proposals that were escalated."),
    (
        "interlock_audit_exceptions",
        "audit_exceptions",
        "Security and refused-decision events, plus problems reported from outside the trail.",
    ),
)
_SUMMARIES = (
    (
        "interlock_mttr_seconds",
        "mttr",
        "completed",
        "Seconds from submission to completion (completed proposals); mean = _sum / _count.",
    ),
    (
        "interlock_first_response_seconds",
        "first_response",
        "responded",
        "Seconds from submission to the first human decision; mean = _sum / _count.",
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def prometheus_text(metrics: dict[str, Any]) -> str:
    """The metrics in the Prometheus text exposition format, one series per group with `by`."""
    by = metrics.get("by")
    if by:
        series = [([(by, m["group"] or "")], m) for m in metrics["groups"]]
    else:
        series = [([], metrics["overall"])]
    lines: list[str] = []
    for name, key, count_key, help_text in _SUMMARIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
        for labels, m in series:
            count = m[count_key]
            mean = m[f"{key}_mean_seconds"]
            total = mean * count if mean is not None else 0.0
            quantile = _labels([*labels, ("quantile", "0.5")])
            lines.append(f"{name}{quantile} {_number(m[f'{key}_median_seconds'])}")
            lines.append(f"{name}_sum{_labels(labels)} {_number(float(total))}")
            lines.append(f"{name}_count{_labels(labels)} {count}")
    for name, key, help_text in _GAUGES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, m in series:
            lines.append(f"{name}{_labels(labels)} {_number(m[key])}")
    return "\n".join(lines) + "\n"


# --- Lifetime counters and histograms (Prometheus conventions) ---------------------------
#
# Counted over the whole append-only trail, so every figure only grows: a true counter, and a
# histogram whose buckets only fill. Every replica that exports them reads the same store and
# shows the same value, so dashboards and rules aggregate them with `max without (instance)`
# (never sum); the per-process evidence fetch series are the ones to sum.

# Seconds from submission: a minute to a day, where people's response times fall.
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
_COUNTED_KINDS = (
    EventKind.SUBMITTED,
    EventKind.FINAL,
    EventKind.DECISION,
    EventKind.ESCALATED,
    EventKind.SECURITY,
    EventKind.DECISION_REFUSED,
    EventKind.AUDIT_EXCEPTION,
)
_EXCEPTION_KINDS = (EventKind.SECURITY, EventKind.DECISION_REFUSED, EventKind.AUDIT_EXCEPTION)
# (metric name, help): the durations lifetime_figures measures per proposal.
HISTOGRAMS = (
    (
        "interlock_time_to_first_response_seconds",
        "Seconds from submission to the first decision by a person.",
    ),
    (
        "interlock_time_to_decision_seconds",
        "Seconds from submission to the first decision, by a person or the policy.",
    ),
    (
        "interlock_time_to_resolve_seconds",
        "Seconds from submission to completion, for proposals that completed.",
    ),
)


def _lifetime_durations() -> Select[Any]:
    """Bucket counts, sums and counts of the three durations, in one pass over the proposals."""
    e = TABLE.c
    decision = _kind(EventKind.DECISION)
    final = _kind(EventKind.FINAL)
    per = (
        select(
            func.min(e.at).filter(_kind(EventKind.SUBMITTED)).label("submitted_at"),
            func.min(e.at).filter(and_(decision, json_flag(e.data, "human"))).label("human_at"),
            func.min(e.at).filter(decision).label("decided_at"),
            func.min(e.at).filter(final).label("final_at"),
            func.max(e.status).filter(final).label("final_status"),
        )
        .where(_kind(EventKind.SUBMITTED, EventKind.DECISION, EventKind.FINAL))
        .group_by(e.proposal_id)
        .subquery("per")
    )
    start = epoch(per.c.submitted_at)
    measured = (
        (epoch(per.c.human_at) - start, per.c.human_at.is_not(None)),
        (epoch(per.c.decided_at) - start, per.c.decided_at.is_not(None)),
        (epoch(per.c.final_at) - start, per.c.final_status == literal_column("'completed'")),
    )
    columns: list[ColumnElement[Any]] = []
    for h, (value, has) in enumerate(measured):
        where = and_(per.c.submitted_at.is_not(None), has)
        columns += [
            func.count().filter(and_(where, value <= bound)).label(f"h{h}_b{i}")
            for i, bound in enumerate(DURATION_BUCKETS)
        ]
        columns += [
            func.count().filter(where).label(f"h{h}_n"),
            func.sum(value).filter(where).label(f"h{h}_s"),
        ]
    return select(*columns).select_from(per)


def _waiting_approvals() -> Select[Any]:
    """Proposals past their preview that neither ran nor ended, per action and risk tier, with
    when the longest-waiting one started waiting (its approval clock starts at the preview)."""
    e = TABLE.c
    per = (
        select(
            func.min(e.at).filter(_kind(EventKind.PREVIEW)).label("waiting_since"),
            func.max(e.action).label("action"),
            func.max(e.risk_tier).label("risk_tier"),
            func.count().filter(_kind(EventKind.EXECUTION_STARTED, EventKind.FINAL)).label("moved"),
        )
        .where(_kind(EventKind.PREVIEW, EventKind.EXECUTION_STARTED, EventKind.FINAL))
        .group_by(e.proposal_id)
        .subquery("per")
    )
    return (
        select(
            per.c.action,
            per.c.risk_tier,
            func.count().label("n"),
            func.min(epoch(per.c.waiting_since)).label("oldest_epoch"),
        )
        .where(per.c.waiting_since.is_not(None), per.c.moved == 0)
        .group_by(per.c.action, per.c.risk_tier)
    )


def lifetime_figures(
    store: AuditStore, expire_after: Any = None, *, now: datetime | None = None
) -> dict[str, Any]:
    """Counters and duration histograms over the whole trail, and the approvals waiting now.

    `expire_after(action, risk_tier)` gives an approval's time limit (a timedelta, or None when
    unknown); with it each waiting group carries `expires_in_seconds`, the time its
    longest-waiting proposal has left.
    """
    now = now or datetime.now(UTC)
    e = TABLE.c
    counts = (
        select(
            e.kind,
            e.status,
            json_text(e.data, "decision").label("decision"),
            json_flag(e.data, "human").label("human"),
            func.count().label("n"),
        )
        .where(_kind(*_COUNTED_KINDS))
        .group_by(e.kind, e.status, json_text(e.data, "decision"), json_flag(e.data, "human"))
    )
    try:
        with store.engine.connect() as conn:
            count_rows = conn.execute(counts).all()
            durations = conn.execute(_lifetime_durations()).one()
            waiting_rows = conn.execute(_waiting_approvals()).all()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc

    finished: dict[str, int] = {}
    decisions: dict[tuple[str, str], int] = {}
    exceptions: dict[str, int] = {}
    submitted = escalations = overrides = 0
    for row in count_rows:
        n = int(row.n)
        if row.kind == EventKind.SUBMITTED:
            submitted += n
        elif row.kind == EventKind.FINAL and row.status:
            finished[row.status] = finished.get(row.status, 0) + n
        elif row.kind == EventKind.DECISION:
            by = "person" if row.human else "policy"
            key = (str(row.decision), by)
            decisions[key] = decisions.get(key, 0) + n
            # An override: a person rejected what the recommender proposed.
            overrides += n if row.human and row.decision == "reject" else 0
        elif row.kind == EventKind.ESCALATED:
            escalations += n
        elif row.kind in _EXCEPTION_KINDS:
            exceptions[row.kind] = exceptions.get(row.kind, 0) + n
    histograms = {}
    for h, (name, _) in enumerate(HISTOGRAMS):
        histograms[name] = {
            "buckets": [int(getattr(durations, f"h{h}_b{i}") or 0) for i in range(len(DURATION_BUCKETS))],
            "count": int(getattr(durations, f"h{h}_n") or 0),
            "sum": float(getattr(durations, f"h{h}_s") or 0.0),
        }
    waiting = []
    for row in waiting_rows:
        group = {"action": row.action or "", "risk_tier": row.risk_tier or "", "count": int(row.n)}
        limit = expire_after(row.action, row.risk_tier) if expire_after is not None else None
        if limit is not None and row.oldest_epoch is not None:
            group["expires_in_seconds"] = float(row.oldest_epoch) + limit.total_seconds() - now.timestamp()
        waiting.append(group)
    return {
        "submitted": submitted,
        "finished": dict(sorted(finished.items())),
        "decisions": dict(sorted(decisions.items())),
        "overrides": overrides,
        "escalations": escalations,
        "audit_exceptions": dict(sorted(exceptions.items())),
        "histograms": histograms,
        "waiting": sorted(waiting, key=lambda g: (g["action"], g["risk_tier"])),
    }


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def sample_line(name: str, labels: list[tuple[str, str]], value: float | int | None) -> str:
    """One sample in the text format, label values escaped."""
    return f"{name}{_labels(labels)} {_number(value)}"


def histogram_lines(
    name: str, labels: list[tuple[str, str]], bounds: Any, buckets: list[int], count: int, total: float
) -> list[str]:
    """One histogram's samples: cumulative `_bucket{le}` (buckets[i] counts values <= bounds[i]),
    `+Inf`, `_sum` and `_count`."""
    lines = [
        f"{name}_bucket{_labels([*labels, ('le', _number(float(b)))])} {n}"
        for b, n in zip(bounds, buckets, strict=True)
    ]
    lines.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {count}")
    lines.append(f"{name}_sum{_labels(labels)} {_number(float(total))}")
    lines.append(f"{name}_count{_labels(labels)} {count}")
    return lines


def lifetime_text(figures: dict[str, Any]) -> str:
    """lifetime_figures in the Prometheus text format: counters end in `_total`, durations are
    histograms in seconds, and no ratio is precomputed (PromQL divides the rates)."""
    lines = _family("interlock_proposals_submitted_total", "counter", "Proposals submitted.")
    lines.append(f"interlock_proposals_submitted_total {figures['submitted']}")
    lines += _family(
        "interlock_proposals_finished_total", "counter", "Proposals that ended, by final status."
    )
    # Every final status is listed, at 0 until it happens: rate() then sees the first one.
    for status in sorted(FINAL_STATUSES):
        n = figures["finished"].get(status, 0)
        lines.append(f"interlock_proposals_finished_total{_labels([('status', status)])} {n}")
    lines += _family(
        "interlock_decisions_total",
        "counter",
        "Approval decisions, by decision and by whom (person or policy).",
    )
    for decision in ("approve", "reject"):
        for by in ("person", "policy"):
            n = figures["decisions"].get((decision, by), 0)
            lines.append(f"interlock_decisions_total{_labels([('decision', decision), ('by', by)])} {n}")
    lines += _family("interlock_overrides_total", "counter", "Proposals a person rejected.")
    lines.append(f"interlock_overrides_total {figures['overrides']}")
    lines += _family("interlock_escalations_total", "counter", "Approvals escalated for want of a decision.")
    lines.append(f"interlock_escalations_total {figures['escalations']}")
    lines += _family(
        "interlock_audit_exceptions_total",
        "counter",
        "Security, refused-decision and audit-exception events in the trail, by kind.",
    )
    for kind in _EXCEPTION_KINDS:
        n = figures["audit_exceptions"].get(kind.value, 0)
        lines.append(f"interlock_audit_exceptions_total{_labels([('kind', kind.value)])} {n}")
    for name, help_text in HISTOGRAMS:
        h = figures["histograms"][name]
        lines += _family(name, "histogram", help_text)
        lines += histogram_lines(name, [], DURATION_BUCKETS, h["buckets"], h["count"], h["sum"])
    lines += _family(
        "interlock_awaiting_approval", "gauge", "Proposals waiting for approval, by action and risk tier."
    )
    for g in figures["waiting"]:
        labels = [("action", g["action"]), ("risk_tier", g["risk_tier"])]
        lines.append(f"interlock_awaiting_approval{_labels(labels)} {g['count']}")
    lines += _family(
        "interlock_approval_expires_in_seconds",
        "gauge",
        "Seconds until the longest-waiting approval of the action and tier expires (negative: overdue).",
    )
    for g in figures["waiting"]:
        if "expires_in_seconds" in g:
            labels = [("action", g["action"]), ("risk_tier", g["risk_tier"])]
            left = _number(g["expires_in_seconds"])
            lines.append(f"interlock_approval_expires_in_seconds{_labels(labels)} {left}")
    return "\n".join(lines) + "\n"


# --- Earned autonomy: the scorecard and the standing of each recommender's model version -------


class json_path_text(FunctionElement[str]):
    """A nested string field of a JSON column (`data.proposal.target.environment`), path inline."""

    type = String()
    inherit_cache = True
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("path", InternalTraversal.dp_string),
    ]

    def __init__(self, column: Any, *path: str):
        # Keys are this module's own constants, never input: safe to write into the SQL text.
        self.path = ".".join(path)
        super().__init__(column)


@compiles(json_path_text, "postgresql")
def _json_path_pg(element: json_path_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} #>> '{{{element.path.replace('.', ',')}}}')"


@compiles(json_path_text, "sqlite")
def _json_path_sqlite(element: json_path_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.{element.path}')"


class whole(FunctionElement[float]):
    """The largest whole number not above a (positive) value, on either database."""

    type = Float()
    inherit_cache = True


@compiles(whole, "postgresql")
def _whole_pg(element: whole, compiler: SQLCompiler, **kw: Any) -> str:
    return f"floor({compiler.process(element.clauses, **kw)})"


@compiles(whole, "sqlite")
def _whole_sqlite(element: whole, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite may be built without floor(); CAST truncates, which is floor for times after 1970.
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


# A change that had to be undone, or that a person has to look at after a failed rollback.
ROLLBACK_STATUSES = ("rolled_back", "needs_manual_intervention")
SCORECARD_KEYS = ("recommender", "model_version", "action")


def _lit(value: str) -> ColumnElement[Any]:
    return literal_column(f"'{value}'")


def _scorecard_proposals(filters: dict[str, str | None], cutoff: datetime | None) -> Any:
    """One row per submitted proposal matching `filters` (recommender, model_version, action,
    service, environment; None: any), submitted at or after `cutoff`."""
    e = TABLE.c
    submitted = _kind(EventKind.SUBMITTED)
    human = and_(_kind(EventKind.DECISION), json_flag(e.data, "human"))
    approve = json_text(e.data, "decision") == _lit("approve")
    reject = json_text(e.data, "decision") == _lit("reject")
    chosen = select(e.proposal_id).where(submitted)
    narrowed = cutoff is not None
    if cutoff is not None:
        chosen = chosen.where(e.at >= cutoff)
    for column, value in filters.items():
        if value is None:
            continue
        narrowed = True
        if column == "environment":
            chosen = chosen.where(json_path_text(e.data, "proposal", "target", "environment") == value)
        else:
            chosen = chosen.where(e[column] == value)
    q = (
        select(
            e.proposal_id,
            func.min(e.at).filter(submitted).label("submitted_at"),
            *(func.min(e[c]).filter(submitted).label(c) for c in (*SCORECARD_KEYS, "service")),
            func.min(json_path_text(e.data, "proposal", "incident")).filter(submitted).label("incident"),
            func.min(e.at).filter(_kind(EventKind.FINAL)).label("final_at"),
            func.max(e.status).filter(_kind(EventKind.FINAL)).label("final_status"),
            func.count().filter(_kind(EventKind.ESCALATED)).label("escalated"),
            func.min(e.at).filter(human).label("first_human_at"),
            func.count().filter(human).label("human_decisions"),
            func.count().filter(and_(human, reject)).label("human_rejections"),
            func.count().filter(and_(_kind(EventKind.DECISION), approve)).label("approvals"),
        )
        .where(_kind(EventKind.SUBMITTED, EventKind.FINAL, EventKind.ESCALATED, EventKind.DECISION))
        .group_by(e.proposal_id)
    )
    if narrowed:
        q = q.where(e.proposal_id.in_(chosen))
    return q.subquery("proposals")


def _in(column: ColumnElement[Any], values: tuple[str, ...] | frozenset[str]) -> ColumnElement[bool]:
    return column.in_([_lit(v) for v in sorted(values)])


def standing_figures(
    store: AuditStore,
    recommender: str,
    model_version: str,
    action: str,
    since: datetime,
    service: str | None = None,
    environment: str | None = None,
) -> dict[str, int]:
    """The final proposals a standing is judged on: this recommender's model version, this action
    (and the rule's service and environment), submitted since `since`."""
    filters = {
        "recommender": recommender,
        "model_version": model_version,
        "action": action,
        "service": service,
        "environment": environment,
    }
    p = _scorecard_proposals(filters, since)
    # A preview that never reached a host judged nothing about the recommendation.
    final = p.c.final_status.is_not(None) & ~_in(p.c.final_status, UNJUDGED_STATUSES)
    false_statuses = frozenset(FALSE_RECOMMENDATION_STATUSES)
    query = select(
        func.count().filter(final).label("proposals"),
        func.count().filter(_in(p.c.final_status, false_statuses)).label("false_recommendations"),
        func.count().filter(_in(p.c.final_status, ROLLBACK_STATUSES)).label("rolled_back"),
        func.coalesce(func.sum(p.c.human_decisions).filter(final), 0).label("human_decisions"),
        func.coalesce(func.sum(p.c.human_rejections).filter(final), 0).label("human_rejections"),
    )
    try:
        with store.engine.connect() as conn:
            row = conn.execute(query).one()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
    return {k: int(v or 0) for k, v in row._mapping.items()}


def mode_changes(
    store: AuditStore,
    recommender: str | None = None,
    model_version: str | None = None,
    rule: str | None = None,
) -> list[dict[str, Any]]:
    """The `mode_changed` events (of one recommender's model version and rule), oldest first."""
    e = TABLE.c
    query = select(e.seq, e.at, e.proposal_id, e.recommender, e.model_version, e.action, e.data).where(
        _kind(EventKind.MODE_CHANGED)
    )
    if recommender is not None:
        query = query.where(e.recommender == recommender)
    if model_version is not None:
        query = query.where(e.model_version == model_version)
    if rule is not None:
        query = query.where(json_text(e.data, "rule") == rule)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(query.order_by(e.seq)).all()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
    return [dict(r._mapping) for r in rows]


def latest_mode_change(
    store: AuditStore, recommender: str, model_version: str, rule: str
) -> dict[str, Any] | None:
    """The newest `mode_changed` event of a standing, or None (a model version with no record)."""
    e = TABLE.c
    query = (
        select(e.seq, e.at, e.data)
        .where(
            _kind(EventKind.MODE_CHANGED),
            e.recommender == recommender,
            e.model_version == model_version,
            json_text(e.data, "rule") == rule,
        )
        .order_by(e.seq.desc())
        .limit(1)
    )
    try:
        with store.engine.connect() as conn:
            row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
    return dict(row._mapping) if row is not None else None


def _mode_at_submission(p: Any) -> Any:
    """The mode a proposal's recommender stood in when it was submitted: the last mode change of
    its model version and action before then (None: none yet)."""
    m = TABLE.alias("m")
    return (
        select(json_text(m.c.data, "to"))
        .where(
            m.c.kind == _lit(EventKind.MODE_CHANGED.value),
            m.c.recommender == p.c.recommender,
            m.c.model_version == p.c.model_version,
            m.c.action == p.c.action,
            m.c.at <= p.c.submitted_at,
        )
        .order_by(m.c.seq.desc())
        .limit(1)
        .correlate(p)
        .scalar_subquery()
    )


def _human_acted_later(p: Any) -> Any:
    """Whether a person approved a proposal for the same incident submitted after this one."""
    s, d = TABLE.alias("s"), TABLE.alias("d")
    return (
        select(literal_column("1"))
        .select_from(s.join(d, d.c.proposal_id == s.c.proposal_id))
        .where(
            s.c.kind == _lit(EventKind.SUBMITTED.value),
            json_path_text(s.c.data, "proposal", "incident") == p.c.incident,
            s.c.at > p.c.submitted_at,
            d.c.kind == _lit(EventKind.DECISION.value),
            json_flag(d.c.data, "human"),
            json_text(d.c.data, "decision") == _lit("approve"),
        )
        .correlate(p)
        .exists()
    )


def scorecard(
    store: AuditStore,
    *,
    recommender: str | None = None,
    model_version: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    start_modes: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per recommender × model version × action: the figures of its proposals submitted since
    `since`, all computed by the database. `start_modes` (action -> mode) is the mode a proposal
    counts as submitted in when its model version had no mode change yet."""
    filters = {"recommender": recommender, "model_version": model_version, "action": action}
    p = _scorecard_proposals(filters, since)
    at_submission = _mode_at_submission(p)
    starts = start_modes or {}
    fallback: ColumnElement[Any] = _lit("approve")
    if starts:
        fallback = case(*((p.c.action == a, _lit(m)) for a, m in sorted(starts.items())), else_=fallback)
    # A proposal that ended shadowed ran in shadow mode, whatever the standing said (the policy's
    # modes rule may have put it there).
    mode = case(
        (p.c.final_status == _lit("shadowed"), _lit("shadow")),
        else_=func.coalesce(at_submission, fallback),
    ).label("mode")
    rows_q = select(p, mode, _human_acted_later(p).label("acted")).subquery("scored")
    r = rows_q.c
    keys = [r.recommender, r.model_version, r.action]
    status = r.final_status
    completed = status == _lit("completed")
    resolution = epoch(r.final_at) - epoch(r.submitted_at)
    response = epoch(r.first_human_at) - epoch(r.submitted_at)
    shadow = r.mode == _lit("shadow")
    with_incident = and_(shadow, r.incident.is_not(None))
    query = select(
        *keys,
        func.count().label("proposals"),
        func.count(r.final_at).label("finals"),
        func.count().filter(_in(status, UNJUDGED_STATUSES)).label("unjudged"),
        func.count().filter(status == _lit("rejected_by_checks")).label("refused_by_checks"),
        func.count().filter(r.approvals > 0).label("approved"),
        func.count().filter(status == _lit("rejected")).label("rejected"),
        func.coalesce(func.sum(r.human_decisions), 0).label("human_decisions"),
        func.coalesce(func.sum(r.human_rejections), 0).label("human_rejections"),
        func.count().filter(status == _lit("rolled_back")).label("rolled_back"),
        func.count().filter(_in(status, ROLLBACK_STATUSES)).label("rollbacks"),
        func.count().filter(status == _lit("completed_unresolved")).label("completed_unresolved"),
        func.count().filter(completed).label("completed"),
        func.count()
        .filter(_in(status, frozenset(FALSE_RECOMMENDATION_STATUSES)))
        .label("false_recommendations"),
        func.avg(resolution).filter(completed).label("mttr_mean_seconds"),
        func.avg(response).label("first_response_mean_seconds"),
        func.count(r.first_human_at).label("responded"),
        func.count().filter(r.escalated > 0).label("escalated"),
        func.count().filter(shadow).label("shadow_proposals"),
        func.count().filter(and_(shadow, status.is_not(None))).label("shadow_finals"),
        func.count().filter(and_(shadow, status == _lit("shadowed"))).label("shadow_confirmed"),
        func.count().filter(with_incident).label("shadow_with_incident"),
        func.count().filter(and_(with_incident, r.acted)).label("shadow_human_acted"),
        # The services worked on, for the baseline comparison: few per pair.
        func.count(func.distinct(r.service)).label("services_n"),
    ).group_by(*keys)
    services_q = select(*keys, r.service).distinct()
    exceptions_q = _exceptions_by_pair(filters, since)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(query.order_by(*keys)).all()
            services = conn.execute(services_q).all()
            exceptions = {tuple(row[:3]): int(row[3]) for row in conn.execute(exceptions_q)}
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
    by_pair: dict[tuple[Any, ...], list[str]] = {}
    for row in services:
        if row[3] is not None:
            by_pair.setdefault(tuple(row[:3]), []).append(row[3])
    cards = []
    for row in rows:
        m = row._mapping
        key = (m["recommender"], m["model_version"], m["action"])
        finals, human = int(m["finals"]), int(m["human_decisions"])
        # The rates are over the finals that judged the recommendation (not preview_failed).
        judged = finals - int(m["unjudged"] or 0)
        card: dict[str, Any] = {k: m[k] for k in SCORECARD_KEYS}
        card.update({k: int(m[k] or 0) for k in (
            "proposals", "finals", "unjudged", "refused_by_checks", "approved", "rejected", "human_decisions",
            "human_rejections", "rolled_back", "rollbacks", "completed_unresolved", "completed",
            "false_recommendations", "responded", "escalated", "shadow_proposals", "shadow_finals",
            "shadow_confirmed", "shadow_with_incident", "shadow_human_acted",
        )})  # fmt: skip
        card.update(
            {
                "refused_by_checks_share": _ratio(card["refused_by_checks"], card["proposals"]),
                "override_rate": _ratio(card["human_rejections"], human),
                "false_recommendation_rate": _ratio(card["false_recommendations"], judged),
                "rollback_rate": _ratio(card["rollbacks"], judged),
                "mttr_mean_seconds": _float(m["mttr_mean_seconds"]),
                "first_response_mean_seconds": _float(m["first_response_mean_seconds"]),
                "audit_exceptions": exceptions.get(key, 0),
                "shadow_confirmed_share": _ratio(card["shadow_confirmed"], card["shadow_finals"]),
                "shadow_human_acted_share": _ratio(card["shadow_human_acted"], card["shadow_with_incident"]),
                "services": sorted(by_pair.get(key, [])),
            }
        )
        cards.append(card)
    return cards


def _exceptions_by_pair(filters: dict[str, str | None], since: datetime | None) -> Select[Any]:
    e = TABLE.c
    keys = [e.recommender, e.model_version, e.action]
    query = select(*keys, func.count()).where(
        _kind(EventKind.SECURITY, EventKind.DECISION_REFUSED, EventKind.AUDIT_EXCEPTION)
    )
    if since is not None:
        query = query.where(e.at >= since)
    for column, value in filters.items():
        if value is not None:
            query = query.where(e[column] == value)
    return query.group_by(*keys)


def figures_over_time(
    store: AuditStore, bucket: timedelta = timedelta(days=1), since: datetime | None = None
) -> list[dict[str, Any]]:
    """Per recommender × model version and time bucket (by submission): proposals, finals, false
    recommendations, rollbacks, human decisions and rejections, and the MTTR sum of completed
    ones: the report's charts."""
    p = _scorecard_proposals({}, since)
    width = bucket.total_seconds()
    start = (whole(epoch(p.c.submitted_at) / width) * width).label("bucket")
    completed = p.c.final_status == _lit("completed")
    query = (
        select(
            p.c.recommender,
            p.c.model_version,
            start,
            func.count().label("proposals"),
            func.count(p.c.final_at).label("finals"),
            func.count()
            .filter(_in(p.c.final_status, frozenset(FALSE_RECOMMENDATION_STATUSES)))
            .label("false_recommendations"),
            func.count().filter(_in(p.c.final_status, ROLLBACK_STATUSES)).label("rollbacks"),
            func.coalesce(func.sum(p.c.human_decisions), 0).label("human_decisions"),
            func.coalesce(func.sum(p.c.human_rejections), 0).label("human_rejections"),
            func.count().filter(completed).label("completed"),
            func.sum(epoch(p.c.final_at) - epoch(p.c.submitted_at)).filter(completed).label("mttr_sum"),
        )
        .group_by(p.c.recommender, p.c.model_version, start)
        .order_by(p.c.recommender, p.c.model_version, start)
    )
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {one_line(exc)}") from exc
    return [
        {
            **{k: v for k, v in r._mapping.items() if k != "bucket"},
            "bucket": datetime.fromtimestamp(float(r.bucket), UTC).isoformat(),
            "mttr_sum": _float(r.mttr_sum),
        }
        for r in rows
    ]

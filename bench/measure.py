"""Small measuring tools: percentiles, round trips counted from a history, CPU seconds, figures."""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Figure:
    """One row of RESULTS.md: a measured value beside its baseline and target."""

    benchmark: str
    metric: str
    unit: str
    samples: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_label: str = ""
    target: str = ""
    met: bool | None = None
    size: str = ""
    note: str = ""
    # Which of median/p99 the target is about ("median", "p99", "ratio"...), for the reader.
    judged_on: str = ""
    # Shown instead of median and p99 (counts that are one number per kind, not samples).
    text: str = ""

    @property
    def median(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    @property
    def baseline_median(self) -> float | None:
        return percentile(self.baseline, 50) if self.baseline else None

    @property
    def baseline_p99(self) -> float | None:
        return percentile(self.baseline, 99) if self.baseline else None


@dataclass
class RoundTrips:
    workflow_tasks: int
    activities: int
    timers: int
    updates: int
    events: int
    activity_types: dict[str, int]


def round_trips(history: WorkflowHistory) -> RoundTrips:
    types: dict[str, int] = {}
    counts = dict.fromkeys(("wft", "act", "timer", "update"), 0)
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            counts["wft"] += 1
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            counts["act"] += 1
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            types[name] = types.get(name, 0) + 1
        elif e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            counts["timer"] += 1
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            counts["update"] += 1
    return RoundTrips(
        counts["wft"], counts["act"], counts["timer"], counts["update"], len(history.events), types
    )


def shape_around_update(history: WorkflowHistory, background: str = "notify") -> tuple[int, int]:
    """Activities (other than the background ones) scheduled before and after the first Update."""
    before = after = 0
    seen_update = False
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            seen_update = True
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if e.activity_task_scheduled_event_attributes.activity_type.name == background:
                continue
            if seen_update:
                after += 1
            else:
                before += 1
    return before, after


def activity_durations(history: WorkflowHistory, activity_type: str) -> list[tuple[float, float]]:
    """(scheduled->completed, started->completed) seconds of each completed activity of a type."""
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    out: list[tuple[float, float]] = []
    for e in history.events:
        t = e.event_time.ToDatetime().timestamp()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = (e.activity_task_scheduled_event_attributes.activity_type.name, t)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[e.activity_task_started_event_attributes.scheduled_event_id] = t
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = e.activity_task_completed_event_attributes.scheduled_event_id
            name, at = scheduled[sid]
            if name == activity_type:
                out.append((t - at, t - started.get(sid, at)))
    return out


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of a process (None: this one and its waited-for children)."""
    if pid is None:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime are fields 14-17 (1-based); after the ")" split, index 11..14.
    return sum(int(x) for x in fields[11:15]) / ticks


def approval_breakdown(history: WorkflowHistory, change: str = "run_change") -> dict[str, float]:
    """Where approval -> completed goes, from the server's event times (seconds): the approve
    Update accepted -> the change's activity scheduled (pre-execution re-check, audit of the
    decision and start); the activity itself (scheduled -> completed); its completion -> the
    workflow task that ends it (the outcome and its audit write are scheduled there)."""
    accepted = scheduled = completed = ended = None
    change_id = None
    for e in history.events:
        t = e.event_time.ToDatetime().timestamp()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED and accepted is None:
            accepted = t
        elif (
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == change
            and change_id is None
        ):
            scheduled, change_id = t, e.event_id
        elif (
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            and e.activity_task_completed_event_attributes.scheduled_event_id == change_id
        ):
            completed = t
        elif (
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            and completed is not None
            and ended is None
        ):
            ended = t
    if None in (accepted, scheduled, completed, ended):
        return {}
    assert accepted is not None and scheduled is not None and completed is not None and ended is not None
    return {
        "update accepted -> change scheduled": scheduled - accepted,
        "change activity": completed - scheduled,
        "change completed -> outcome workflow task": ended - completed,
    }

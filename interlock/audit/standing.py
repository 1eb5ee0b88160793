"""Standings against the audit store: where a recommender's model version stands under its
graduation rule, and the evaluation that records a promotion or demotion as a `mode_changed` event.

The rules are interlock.autonomy's (pure); this module reads the figures and writes the event.
"""

from __future__ import annotations

import logging
from datetime import datetime

from interlock.audit.events import AuditEventIn, EventKind
from interlock.audit.metrics import latest_mode_change, standing_figures
from interlock.audit.store import AuditStore, EventIdConflict
from interlock.autonomy import (
    Figures,
    GraduationInput,
    ModeChange,
    Standing,
    Verdict,
    ceiling,
    current_mode,
    evaluate,
    mode_change_event_id,
    window_start,
)
from interlock.policy import GraduationRule, Mode, Policy

log = logging.getLogger(__name__)


def standing_of(
    store: AuditStore, rule: GraduationRule, top: Mode, recommender: str, model_version: str
) -> Standing:
    """The recorded standing (its last mode change), or the rule's start for a new model version;
    never above the ceiling `top`."""
    last = latest_mode_change(store, recommender, model_version, rule.key)
    recorded = Mode(last["data"]["to"]) if last is not None else None
    return Standing(
        recommender=recommender,
        model_version=model_version,
        rule=rule.key,
        mode=current_mode(rule, top, recorded),
        seq=last["seq"] if last is not None else 0,
        since=last["at"] if last is not None else None,
    )


def figures_of(
    store: AuditStore, rule: GraduationRule, standing: Standing, action: str, now: datetime
) -> Figures:
    counts = standing_figures(
        store,
        standing.recommender,
        standing.model_version,
        action,
        window_start(rule, standing, now),
        service=None if rule.service == "*" else rule.service,
        environment=None if rule.environment == "*" else rule.environment,
    )
    return Figures(**counts)


def judged(
    store: AuditStore,
    policy: Policy,
    recommender: str,
    model_version: str,
    action: str,
    environment: str,
    service: str,
    now: datetime,
) -> tuple[GraduationRule, Standing, Figures, Verdict] | None:
    """The rule, standing, figures and verdict for one proposal's scope (None: no rule)."""
    rule = policy.graduation_for(action, environment, service)
    if rule is None:
        return None
    top = ceiling(policy, action, environment, service)
    standing = standing_of(store, rule, top, recommender, model_version)
    figures = figures_of(store, rule, standing, action, now)
    return rule, standing, figures, evaluate(rule, top, standing.mode, figures)


def evaluate_graduation(store: AuditStore, policy: Policy, inp: GraduationInput) -> list[ModeChange]:
    """Judge the standing of the proposal's recommender and model version after its final status;
    a promotion or demotion is recorded once (the event id names the standing it replaces)."""
    found = judged(
        store, policy, inp.recommender, inp.model_version, inp.action, inp.environment, inp.service, inp.at
    )
    if found is None:
        return []
    rule, standing, figures, verdict = found
    if verdict.to is None or verdict.direction is None:
        return []
    change = ModeChange(
        recommender=inp.recommender,
        model_version=inp.model_version,
        rule=rule.key,
        from_mode=standing.mode,
        to_mode=verdict.to,
        direction=verdict.direction,
        figures=figures.summary(),
        reasons=verdict.reasons,
    )
    event = AuditEventIn(
        event_id=mode_change_event_id(inp.recommender, inp.model_version, rule.key, standing.seq),
        proposal_id=inp.proposal_id,
        kind=EventKind.MODE_CHANGED,
        at=inp.at,
        actor="interlock graduation",
        status=inp.status,
        recommender=inp.recommender,
        model_version=inp.model_version,
        action=inp.action,
        service=inp.service,
        data={
            "rule": rule.key,
            "from": standing.mode.value,
            "to": verdict.to.value,
            "direction": verdict.direction,
            "figures": change.figures,
            "reasons": verdict.reasons,
            "trigger": inp.proposal_id,
            "window_seconds": rule.window.total_seconds(),
            "since": window_start(rule, standing, inp.at).isoformat(),
            "policy": policy.version_id,
        },
    )
    try:
        result = store.append(event)
    except EventIdConflict:
        # Another proposal's evaluation changed this standing first: it stands changed once.
        log.info("standing %s of %s %s already changed", rule.key, inp.recommender, inp.model_version)
        return []
    if result.duplicate:
        # A retry of this very evaluation (same figures): its answer may never have reached the
        # workflow, so it is given again and notified.
        log.debug("mode change %s was already recorded", event.event_id)
    return [change]

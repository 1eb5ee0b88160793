"""Earned autonomy: the pure rules that move a recommender's model version between modes.

A standing (the mode earned for one graduation rule) changes only by a `mode_changed` audit
event; this module judges figures against the policy's thresholds and never touches a store.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from interlock.governance import Governance
from interlock.policy import GraduationRule, Mode, Policy, Thresholds

# Lowest autonomy first: a promotion moves one step right, a demotion one step left.
MODE_ORDER = (Mode.SHADOW, Mode.APPROVE, Mode.AUTO)


def rank(mode: Mode) -> int:
    return MODE_ORDER.index(mode)


def lower(a: Mode, b: Mode) -> Mode:
    return a if rank(a) <= rank(b) else b


class Figures(BaseModel):
    """A standing's record: the final proposals of its stint (since its last mode change, within
    the rule's window), counted by the audit store."""

    proposals: int = 0
    false_recommendations: int = 0
    rolled_back: int = 0
    human_decisions: int = 0
    human_rejections: int = 0

    @property
    def false_recommendation_rate(self) -> float | None:
        return self.false_recommendations / self.proposals if self.proposals else None

    @property
    def rollback_rate(self) -> float | None:
        return self.rolled_back / self.proposals if self.proposals else None

    @property
    def override_rate(self) -> float | None:
        return self.human_rejections / self.human_decisions if self.human_decisions else None

    def summary(self) -> dict[str, float | int | None]:
        """The counts and rates, as recorded on a `mode_changed` event."""
        return {
            **self.model_dump(),
            "false_recommendation_rate": self.false_recommendation_rate,
            "rollback_rate": self.rollback_rate,
            "override_rate": self.override_rate,
        }


class Standing(BaseModel):
    """Where one recommender's model version stands under one graduation rule."""

    recommender: str
    model_version: str
    rule: str
    mode: Mode
    # The last mode_changed event's row and time; seq 0: none yet (a new model version).
    seq: int = 0
    since: AwareDatetime | None = None


class GraduationInput(BaseModel):
    """What the workflow hands the graduation activity when a proposal reaches a final status."""

    proposal_id: str
    recommender: str
    model_version: str
    action: str
    service: str
    environment: str
    status: str
    at: AwareDatetime


class ModeChange(BaseModel):
    recommender: str
    model_version: str
    rule: str
    from_mode: Mode
    to_mode: Mode
    direction: Literal["promoted", "demoted"]
    figures: dict[str, float | int | None]
    reasons: list[str]

    def text(self) -> str:
        return (
            f"{self.recommender} {self.model_version} {self.direction} from {self.from_mode.value} "
            f"to {self.to_mode.value} for {self.rule}: {'; '.join(self.reasons)}"
        )


class GraduationResult(BaseModel):
    changes: list[ModeChange] = Field(default_factory=list)


class Verdict(BaseModel):
    """What the rule makes of a standing's figures: a new mode (or None) and why; `needs` is what
    the next promotion still lacks (empty when there is none to earn)."""

    to: Mode | None = None
    direction: Literal["promoted", "demoted"] | None = None
    reasons: list[str] = Field(default_factory=list)
    next_mode: Mode | None = None
    needs: list[str] = Field(default_factory=list)


def ceiling(policy: Policy, action: str, environment: str, service: str) -> Mode:
    """The most autonomy the policy allows here: its `modes` rule (auto only up to its max_tier,
    which the policy model already keeps below high)."""
    return policy.mode_for(action, environment, service).mode


def start_mode(rule: GraduationRule, top: Mode) -> Mode:
    """The mode a model version with no record starts in ("re-test after change")."""
    return lower(rule.start, top)


def current_mode(rule: GraduationRule, top: Mode, recorded: Mode | None) -> Mode:
    """The mode in force: the recorded standing (or the start), never above the ceiling."""
    return lower(recorded if recorded is not None else rule.start, top)


def window_start(rule: GraduationRule, standing: Standing, now: datetime) -> datetime:
    """Only the stint counts: proposals since the last mode change, and within the window."""
    start = now - rule.window
    return max(start, standing.since) if standing.since is not None else start


def _pct(value: float) -> str:
    return f"{value:.0%}" if value * 100 == int(value * 100) else f"{value:.1%}"


def _rates(limits: Thresholds, figures: Figures) -> list[tuple[str, float | None, float | None]]:
    return [
        ("false recommendation rate", figures.false_recommendation_rate,
         limits.max_false_recommendation_rate),
        ("rollback rate", figures.rollback_rate, limits.max_rollback_rate),
        ("override rate", figures.override_rate, limits.max_override_rate),
    ]  # fmt: skip


def exceeded(limits: Thresholds, figures: Figures) -> list[str]:
    """The rates above their maximum (a demotion's reasons), once there are enough proposals."""
    if figures.proposals < limits.min_proposals:
        return []
    return [
        f"{name} {_pct(value)} > {_pct(limit)} over {figures.proposals} proposal(s)"
        for name, value, limit in _rates(limits, figures)
        if value is not None and limit is not None and value > limit
    ]


def unmet(limits: Thresholds, figures: Figures) -> list[str]:
    """What a promotion still needs: more proposals, or a rate back under its maximum."""
    needs = []
    if figures.proposals < limits.min_proposals:
        needs.append(f"{limits.min_proposals - figures.proposals} more final proposal(s) "
                     f"({figures.proposals} of {limits.min_proposals})")  # fmt: skip
    needs += [
        f"{name} {_pct(value)} must be at most {_pct(limit)}"
        for name, value, limit in _rates(limits, figures)
        if value is not None and limit is not None and value > limit
    ]
    return needs


def met(limits: Thresholds, figures: Figures) -> list[str]:
    """The figures that justify a promotion, as recorded with it."""
    lines = [f"{figures.proposals} final proposal(s) (at least {limits.min_proposals})"]
    lines += [
        f"{name} {_pct(value or 0.0)} <= {_pct(limit)}"
        for name, value, limit in _rates(limits, figures)
        if limit is not None
    ]
    return lines


def evaluate(rule: GraduationRule, top: Mode, current: Mode, figures: Figures) -> Verdict:
    """Demote one mode when the demotion thresholds are exceeded; otherwise promote one mode when
    the next mode's thresholds are met and the ceiling allows it; otherwise stay."""
    verdict = Verdict()
    if rank(current) > 0 and rule.demote is not None:
        reasons = exceeded(rule.demote, figures)
        if reasons:
            return Verdict(to=MODE_ORDER[rank(current) - 1], direction="demoted", reasons=reasons)
    if rank(current) + 1 < len(MODE_ORDER):
        up = MODE_ORDER[rank(current) + 1]
        limits = rule.promote.get(up.value)  # type: ignore[call-overload]
        if limits is not None and rank(up) <= rank(top):
            verdict.next_mode = up
            verdict.needs = unmet(limits, figures)
            if not verdict.needs:
                return Verdict(to=up, direction="promoted", reasons=met(limits, figures), next_mode=up)
        elif limits is not None:
            verdict.next_mode = up
            verdict.needs = [f"the policy's modes rule allows at most {top.value}"]
    return verdict


def mode_change_event_id(recommender: str, model_version: str, rule: str, prev_seq: int) -> str:
    """One id per standing and previous change: two evaluations that both saw the same standing
    write the same id, so the store keeps only the first (a change is recorded exactly once)."""
    digest = hashlib.sha256(f"{recommender}\n{model_version}\n{rule}\n{prev_seq}".encode()).hexdigest()
    return f"mode_changed/{digest[:40]}"


def with_standing(gov: Governance, mode: Mode) -> Governance:
    """The governance a proposal runs under once its recommender's standing is known: the mode
    earned (the modes rule's auto tier and confidence still apply)."""
    return gov.model_copy(update={"mode": mode})

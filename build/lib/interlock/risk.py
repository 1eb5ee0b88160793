"""Deterministic, explainable risk scoring.

A pure function of facts Interlock gathered (never of the recommender's prose): the same
input always gives the same score, and every point of it is attributed to a factor that
names the fact behind it. RiskInput has no field for the rationale or evidence text.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from interlock.models import RiskAssessment, RiskFactor
from interlock.policy import RiskSettings

BLAST_RADIUS_PER_DEPENDENT = 5
BLAST_RADIUS_CAP = 20
CONFIDENCE_WEIGHT = 20
UNCONFIRMED_EVIDENCE_WEIGHT = 15
SINGLE_SOURCE_PENALTY = 5
RECENT_CHANGE_POINTS = 10
# Points at a 100% rate of rejected, rolled back or unresolved proposals.
TRACK_RECORD_WEIGHT = 30
FREEZE_POINTS = 15
# Points when a change reaches the whole fleet; a share of it gets that share of the points,
# and a change to more than one host adds a little for each host beyond the first.
FLEET_SHARE_WEIGHT = 10
PER_EXTRA_HOST_POINTS = 1
PER_HOST_CAP = 10


class RecentChange(BaseModel):
    """An execution Interlock ran (or is running) on the same service."""

    proposal_id: str
    action: str
    status: str
    at: datetime | None = None


class TrackRecord(BaseModel):
    """A recommender's finished proposals over the policy's window, by outcome."""

    finished: int
    rejected: int = 0
    rolled_back: int = 0
    unresolved: int = 0

    @property
    def bad(self) -> int:
        return self.rejected + self.rolled_back + self.unresolved

    @property
    def rate(self) -> float:
        return self.bad / self.finished if self.finished else 0.0


class RiskInput(BaseModel):
    # Facts only: an unknown field (a rationale, a summary) is refused, never ignored.
    model_config = ConfigDict(extra="forbid")

    action: str
    base_risk: int
    environment: str
    environment_risk: int
    service: str
    dependents: list[str]
    confidence: float
    evidence_total: int
    evidence_confirmed: int
    recommender: str = ""
    recent_changes: list[RecentChange] = Field(default_factory=list)
    recent_change_window: timedelta = timedelta(hours=1)
    # None: the record could not be read (shown as such, never guessed).
    track_record: TrackRecord | None = None
    track_record_window: timedelta = timedelta(days=30)
    track_record_error: str = ""
    freezes: list[str] = Field(default_factory=list)
    # After the preview: the hosts it says would change, and how many hosts the catalog lists
    # for the service in this environment. None before a preview (no `hosts` factor yet).
    hosts_changing: list[str] | None = None
    fleet_size: int = 0


def score_risk(facts: RiskInput, settings: RiskSettings) -> RiskAssessment:
    factors = [
        RiskFactor(
            name="action",
            contribution=facts.base_risk,
            detail=f"base risk of {facts.action}",
        ),
        RiskFactor(
            name="environment",
            contribution=facts.environment_risk,
            detail=f"environment {facts.environment}",
        ),
    ]
    blast = min(len(facts.dependents) * BLAST_RADIUS_PER_DEPENDENT, BLAST_RADIUS_CAP)
    factors.append(
        RiskFactor(
            name="blast_radius",
            contribution=blast,
            detail=(
                f"{len(facts.dependents)} dependent service(s) of {facts.service}"
                + (f": {', '.join(facts.dependents)}" if facts.dependents else "")
            ),
        )
    )
    factors.append(
        RiskFactor(
            name="confidence",
            contribution=round((1.0 - facts.confidence) * CONFIDENCE_WEIGHT),
            detail=f"model confidence {facts.confidence:.2f}",
        )
    )
    factors.append(_evidence(facts))
    factors.append(_recent_change(facts))
    factors.append(_track_record(facts))
    factors.append(
        RiskFactor(
            name="freeze",
            contribution=FREEZE_POINTS if facts.freezes else 0,
            detail=(
                f"freeze window in force: {', '.join(facts.freezes)}"
                if facts.freezes
                else "no freeze window in force"
            ),
        )
    )
    if facts.hosts_changing is not None:
        factors.append(_hosts(facts))
    score = max(0, min(100, sum(f.contribution for f in factors)))
    return RiskAssessment(score=score, tier=settings.tier(score), factors=factors)


def _hosts(facts: RiskInput) -> RiskFactor:
    changing = facts.hosts_changing or []
    fleet = max(facts.fleet_size, len(changing))
    if not changing:
        return RiskFactor(
            name="hosts", contribution=0, detail=f"the preview shows no host of {facts.service} changing"
        )
    share = len(changing) / fleet
    extra = min((len(changing) - 1) * PER_EXTRA_HOST_POINTS, PER_HOST_CAP)
    points = round(share * FLEET_SHARE_WEIGHT) + extra
    return RiskFactor(
        name="hosts",
        contribution=points,
        detail=(
            f"the preview shows {len(changing)} of {fleet} host(s) of {facts.service} changing "
            f"({share:.0%} of the fleet): {', '.join(changing)}"
        ),
    )


def _evidence(facts: RiskInput) -> RiskFactor:
    if facts.evidence_total == 0:
        points = UNCONFIRMED_EVIDENCE_WEIGHT
    else:
        unconfirmed = 1 - facts.evidence_confirmed / facts.evidence_total
        points = round(unconfirmed * UNCONFIRMED_EVIDENCE_WEIGHT)
        if facts.evidence_confirmed == 1:
            points += SINGLE_SOURCE_PENALTY
    detail = f"{facts.evidence_confirmed} of {facts.evidence_total} evidence item(s) confirmed at the source"
    if facts.evidence_confirmed == 1:
        detail += " (a single confirmed source)"
    return RiskFactor(name="evidence", contribution=points, detail=detail)


def _recent_change(facts: RiskInput) -> RiskFactor:
    window = _span(facts.recent_change_window)
    if not facts.recent_changes:
        return RiskFactor(
            name="recent_change",
            contribution=0,
            detail=f"no change by Interlock to {facts.service} in the last {window}",
        )
    latest = max(facts.recent_changes, key=lambda c: (c.at is None, c.at or datetime.min))
    when = f" at {latest.at.strftime('%Y-%m-%d %H:%M:%S UTC')}" if latest.at else " (still running)"
    return RiskFactor(
        name="recent_change",
        contribution=RECENT_CHANGE_POINTS,
        detail=(
            f"{len(facts.recent_changes)} change(s) to {facts.service} in the last {window}; "
            f"latest {latest.action} {latest.proposal_id} ({latest.status}){when}"
        ),
    )


def _track_record(facts: RiskInput) -> RiskFactor:
    window = _span(facts.track_record_window)
    who = facts.recommender or "the recommender"
    record = facts.track_record
    if record is None:
        why = f": {facts.track_record_error}" if facts.track_record_error else ""
        return RiskFactor(
            name="track_record", contribution=0, detail=f"track record of {who} unavailable{why}"
        )
    if record.finished == 0:
        return RiskFactor(
            name="track_record",
            contribution=0,
            detail=f"{who} has no finished proposals in the last {window}",
        )
    return RiskFactor(
        name="track_record",
        contribution=round(record.rate * TRACK_RECORD_WEIGHT),
        detail=(
            f"{who}: {record.bad} of {record.finished} finished proposal(s) in the last {window} "
            f"went wrong ({record.rejected} rejected, {record.rolled_back} rolled back, "
            f"{record.unresolved} completed_unresolved)"
        ),
    )


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

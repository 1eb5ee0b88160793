"""The governance policy: action catalog, service catalog, evidence sources and roster.

Policy is data: a versioned YAML file validated by these models. Loading it is the only
I/O here (`load_policy`); everything else is pure so workflows and tests can use it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from interlock.durations import Duration, parse_duration
from interlock.facts import FactSpec, fact_name_problem
from interlock.models import SAFE_NAME, Proposal, RiskTier, Stage
from interlock.sources import DEPLOY_CHECK, ActionSource, SourceSpec

__all__ = ["ActionSource", "Duration", "SourceSpec", "parse_duration"]


def normalise_name(name: str) -> str:
    """Fold case, spaces and underscores so 'CHECKOUT API' and 'checkout_api' compare equal."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _host_name(value: str) -> str:
    # Hosts reach Ansible's --limit: a name only, never a pattern (no ':', '!', '&', '*', '~').
    if not SAFE_NAME.match(value) or value.lower().startswith("ansible_"):
        raise ValueError(f"host {value!r} is not a safe inventory name")
    return value


HostName = Annotated[str, AfterValidator(_host_name)]


class ServiceSpec(_Model):
    owner: str
    aliases: list[str] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=lambda: ["lab"])
    dependents: list[str] = Field(default_factory=list)
    # Per environment, the inventory hosts (or groups) the service runs on. An environment
    # without an entry has no host list: its playbooks run without a --limit.
    hosts: dict[str, list[HostName]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hosts_in_environments(self) -> ServiceSpec:
        for env, names in self.hosts.items():
            if env not in self.environments:
                raise ValueError(f"hosts: {env!r} is not one of the service's environments")
            if len(set(names)) != len(names):
                raise ValueError(f"hosts.{env}: a host is listed twice")
        return self


class ParameterSpec(_Model):
    allowed: list[str]
    description: str = ""

    @model_validator(mode="after")
    def _safe_values(self) -> ParameterSpec:
        for value in self.allowed:
            if not SAFE_NAME.match(value) or value.lower().startswith("ansible_"):
                raise ValueError(f"allowed value {value!r} is not a safe name")
        return self


class Playbooks(_Model):
    run: str
    verify: str
    rollback: str

    def for_stage(self, stage: Stage) -> str:
        if stage in (Stage.PREVIEW, Stage.EXECUTE):
            return self.run
        if stage is Stage.ROLLBACK:
            return self.rollback
        return self.verify


class Rollout(_Model):
    """How an action's change goes through a service's hosts: `batch` hosts at a time (a count
    or a share like "25%"), stopping once more than `max_failed` hosts failed, `pause` between."""

    batch: int | str = 1
    max_failed: Annotated[int, Field(ge=0)] = 0
    pause: Duration | None = None

    @model_validator(mode="after")
    def _batch(self) -> Rollout:
        if isinstance(self.batch, int):
            if self.batch < 1:
                raise ValueError("batch: at least 1 host")
        elif not re.fullmatch(r"(100|[1-9][0-9]?)%", self.batch):
            raise ValueError(f"batch: {self.batch!r} is neither a number of hosts nor a share like '25%'")
        return self


class StageTimeouts(_Model):
    """The longest each of an action's playbooks may run (unset: the worker's setting)."""

    preview: Duration | None = None
    execute: Duration | None = None
    verify: Duration | None = None
    rollback: Duration | None = None

    def for_stage(self, stage: Stage) -> timedelta | None:
        if stage is Stage.VERIFY_ROLLBACK:
            return self.verify
        value: timedelta | None = getattr(self, stage.value)
        return value


class PreviewRetry(_Model):
    """How often a preview that failed for infrastructure (a host unreachable, SSH refused, ansible
    rc 4) is tried in all, waiting `backoff` before the second try and twice as long before each
    next one (durable workflow timers). Still failing, the proposal ends `preview_failed`."""

    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    backoff: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _backoff(self) -> PreviewRetry:
        if not timedelta(0) <= self.backoff <= timedelta(minutes=10):
            raise ValueError("backoff: between 0s and 10m")
        return self


# Variables only the lab's playbooks need: passed to an action's playbooks where it sets `lab_vars`.
LAB_VARS = ("lab_root", "service_manager")


class ActionSpec(_Model):
    description: str = ""
    owner: str
    playbooks: Playbooks
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    base_risk: Annotated[int, Field(ge=0, le=100)]
    evidence_sources: dict[str, ActionSource]
    approval_timeout: Duration | None = None
    # After a successful run, how long the evidence that justified it may take to clear
    # (the alert to resolve, the health check to pass). None: the evidence is not re-read.
    settle_time: Duration | None = None
    # Rolling execution over the service's hosts; None: every host in one batch.
    rollout: Rollout | None = None
    timeouts: StageTimeouts = Field(default_factory=StageTimeouts)
    # What the run playbook reports per host (set_stats, per_host: true) for verify and
    # rollback, by name and type; the preview must report every one of them, typed.
    facts: dict[str, FactSpec] = Field(default_factory=dict)
    preview_retry: PreviewRetry = Field(default_factory=PreviewRetry)
    # The lab's playbooks need `lab_root` and `service_manager`; no other action receives them.
    lab_vars: bool = False
    # Verify (and a rollback's check) in an Ansible run of its own. By default a change and its
    # check run in one ansible-playbook process (two plays, results kept apart per stage).
    verify_separately: bool = False

    @model_validator(mode="after")
    def _parameter_names(self) -> ActionSpec:
        for name in self.parameters:
            if not SAFE_NAME.match(name) or name.lower().startswith("ansible_"):
                raise ValueError(f"parameter name {name!r} is not allowed")
            if name in ("service", *LAB_VARS) or name.startswith("interlock_"):
                raise ValueError(f"parameter name {name!r} is reserved for Interlock")
        problems = [why for name in self.facts if (why := fact_name_problem(name))]
        # A fact is never a parameter too: the activity refuses a parameter named like a fact.
        problems += [
            f"{name!r} is also a parameter of the action" for name in self.facts if name in self.parameters
        ]
        if problems:
            raise ValueError("facts: " + "; ".join(problems))
        return self


class Approver(_Model):
    groups: list[str]
    public_key: str | None = None  # Ed25519, base64 of the raw 32 bytes


class Environment(_Model):
    risk: Annotated[int, Field(ge=0, le=100)] = 0


class RiskSettings(_Model):
    """Tier boundaries: a score below `medium` is low, below `high` medium, and so on.

    The windows are how far back risk scoring looks for facts: changes Interlock made to
    the same service, and the recommender's finished proposals (its track record).
    """

    medium: int = 25
    high: int = 50
    critical: int = 75
    recent_change_window: Duration = timedelta(hours=1)
    track_record_window: Duration = timedelta(days=30)

    def tier(self, score: int) -> RiskTier:
        if score >= self.critical:
            return RiskTier.CRITICAL
        if score >= self.high:
            return RiskTier.HIGH
        if score >= self.medium:
            return RiskTier.MEDIUM
        return RiskTier.LOW


class ApprovalRule(_Model):
    """How many distinct approvers a tier needs, from which groups, and its clocks."""

    approvals: Annotated[int, Field(ge=1, le=10)] = 1
    groups: list[str] | None = None  # None: any group in the roster
    require_owner: bool = False  # one approver must be in the service's owning group
    require_group: str | None = None  # one approver must be in this group
    unsigned_allowed: bool = False
    escalate_after: Duration = timedelta(hours=4)
    expire_after: Duration = timedelta(hours=24)
    escalation_group: str | None = None


class Mode(StrEnum):
    SHADOW = "shadow"
    APPROVE = "approve"
    AUTO = "auto"


class ModeRule(_Model):
    action: str = "*"
    environment: str = "*"
    service: str = "*"
    mode: Mode = Mode.APPROVE
    max_tier: RiskTier = RiskTier.LOW  # auto only: highest tier the policy approves itself
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.9

    @model_validator(mode="after")
    def _never_auto_high(self) -> ModeRule:
        if self.mode is Mode.AUTO and self.max_tier.rank > RiskTier.MEDIUM.rank:
            raise ValueError("auto mode may never approve high or critical changes")
        return self

    def matches(self, action: str, environment: str, service: str) -> bool:
        return all(
            rule in ("*", value)
            for rule, value in (
                (self.action, action),
                (self.environment, environment),
                (self.service, service),
            )
        )


class Thresholds(_Model):
    """Figures a recommender and model version must stay within over a graduation window.

    Rates are over the final proposals counted (override: over the human decisions); a rate
    that is not set is not checked.
    """

    min_proposals: Annotated[int, Field(ge=1, le=100_000)] = 1
    max_false_recommendation_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    max_rollback_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    max_override_rate: Annotated[float, Field(ge=0, le=1)] | None = None


class GraduationRule(_Model):
    """How a recommender's model version earns (and loses) autonomy for an action.

    `start` is the mode a new model version begins in; `promote.approve` and `promote.auto`
    are what it must show over `window` (since its last mode change) to move up one mode;
    `demote` is what moves it down one. The policy's `modes` rule for the same action is the
    ceiling: graduation never gives more than it (nor auto above its max_tier).
    """

    action: str
    service: str = "*"
    environment: str = "*"
    window: Duration = timedelta(days=30)
    start: Mode = Mode.SHADOW
    promote: dict[Literal["approve", "auto"], Thresholds] = Field(default_factory=dict)
    demote: Thresholds | None = None

    @model_validator(mode="after")
    def _shape(self) -> GraduationRule:
        if self.start is Mode.AUTO:
            raise ValueError("start: a new model version never starts in auto; it must earn it")
        if not self.promote and self.demote is None:
            raise ValueError("a graduation rule needs promote or demote thresholds")
        if self.window <= timedelta(0):
            raise ValueError("window: must be positive")
        return self

    def matches(self, action: str, environment: str, service: str) -> bool:
        return all(rule in ("*", value) for rule, value in (
            (self.action, action), (self.environment, environment), (self.service, service)
        ))  # fmt: skip

    @property
    def key(self) -> str:
        """What a standing is recorded under: the rule's scope."""
        return f"{self.action}/{self.service}/{self.environment}"


class RecommenderScope(_Model):
    actions: list[str]
    services: list[str] = Field(default_factory=lambda: ["*"])
    environments: list[str] = Field(default_factory=lambda: ["*"])
    max_tier: RiskTier = RiskTier.HIGH


class FreezeWindow(_Model):
    name: str
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    # Recurring: days of week (mon..sun) and a UTC time range "HH:MM-HH:MM".
    days: list[str] = Field(default_factory=list)
    hours: str | None = None
    environments: list[str] = Field(default_factory=lambda: ["*"])
    actions: list[str] = Field(default_factory=lambda: ["*"])

    @model_validator(mode="after")
    def _shape(self) -> FreezeWindow:
        if self.start is None and self.end is None and not self.days and not self.hours:
            raise ValueError("a freeze needs start/end or a recurring days/hours rule")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        bad = [d for d in self.days if d not in _DAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {', '.join(_DAYS)}")
        if self.hours and not re.match(r"^\d\d:\d\d-\d\d:\d\d$", self.hours):
            raise ValueError("hours must look like 22:00-06:00 (UTC)")
        return self

    def active(self, now: datetime, action: str, environment: str) -> bool:
        if "*" not in self.actions and action not in self.actions:
            return False
        if "*" not in self.environments and environment not in self.environments:
            return False
        if self.start and now < self.start:
            return False
        if self.end and now >= self.end:
            return False
        if self.days and _DAYS[now.astimezone(UTC).weekday()] not in self.days:
            return False
        if self.hours:
            begin, finish = self.hours.split("-")
            clock = now.astimezone(UTC).strftime("%H:%M")
            inside = begin <= clock < finish if begin <= finish else (clock >= begin or clock < finish)
            if not inside:
                return False
        return True


DedupField = Literal["action", "service", "environment", "incident", "recommender", "parameters"]


class Dedup(_Model):
    """When a proposal is a duplicate of an open one: same `key` fields, within `window`.

    The service in the key is the canonical one, so aliases of one service dedup together.
    A key naming `incident` never matches a proposal without an incident.
    """

    enabled: bool = True
    window: Duration = timedelta(hours=24)
    key: Annotated[list[DedupField], Field(min_length=1)] = Field(
        default_factory=lambda: list[DedupField](["action", "service", "environment", "incident"])
    )

    @model_validator(mode="after")
    def _unique(self) -> Dedup:
        if len(set(self.key)) != len(self.key):
            raise ValueError("key: a field is named twice")
        return self

    def key_of(self, proposal: Proposal, service: str) -> str | None:
        """The proposal's dedup key, or None when it cannot be a duplicate of anything."""
        if not self.enabled or ("incident" in self.key and not proposal.incident):
            return None
        values = {
            "action": proposal.action,
            "service": service,
            "environment": proposal.target.environment,
            "incident": proposal.incident or "",
            "recommender": proposal.recommender,
            "parameters": ",".join(f"{k}={v}" for k, v in sorted(proposal.parameters.items())),
        }
        return "|".join(f"{name}={values[name]}" for name in self.key)


class Notifier(_Model):
    kind: Literal["file", "webhook"] = "file"
    path: str = "notifications.jsonl"  # relative to the state folder
    url: str | None = None
    ui_base_url: str = "http://localhost:8233"


_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class PolicyReferenceErrors(ValueError):
    """Every cross-reference problem of a policy at once, one 'path: reason' line each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def reference_errors(doc: Any) -> list[str]:
    """Names in a policy document that point at nothing, as 'path: reason' lines.

    Works on the raw YAML as well as on a validated policy's dump, so a file with broken
    fields still has all its unknown groups, sources and actions reported in the same run.
    """
    doc = _mapping(doc)
    errors: list[str] = []
    groups = set(_names(doc.get("groups")))
    environments = set(_mapping(doc.get("environments", {"lab": {}})))
    sources = set(_mapping(doc.get("sources")))
    actions = _mapping(doc.get("actions"))
    services = _mapping(doc.get("services"))

    def group(path: str, value: Any) -> None:
        if isinstance(value, str) and value not in groups:
            errors.append(f"{path}: unknown group {value!r}")

    for name, svc in services.items():
        svc = _mapping(svc)
        group(f"services.{name}.owner", svc.get("owner"))
        for env in _names(svc.get("environments", ["lab"])):
            if env not in environments:
                errors.append(f"services.{name}.environments: unknown environment {env!r}")
    for name, action in actions.items():
        action = _mapping(action)
        group(f"actions.{name}.owner", action.get("owner"))
        for src, use in _mapping(action.get("evidence_sources")).items():
            if src not in sources:
                errors.append(f"actions.{name}.evidence_sources: unknown source {src!r}")
                continue
            defined = set(_mapping(_mapping(_mapping(doc.get("sources")).get(src)).get("checks")))
            if _mapping(_mapping(doc.get("sources")).get(src)).get("kind") == "changes":
                defined = {DEPLOY_CHECK}
            for check in _names(_mapping(use).get("checks")):
                if check not in defined:
                    errors.append(
                        f"actions.{name}.evidence_sources.{src}.checks: source {src} defines "
                        f"no check {check!r}"
                    )
    for name, spec in _mapping(doc.get("sources")).items():
        rules = _mapping(spec).get("rules_source")
        if isinstance(rules, str):
            rules_kind = _mapping(_mapping(doc.get("sources")).get(rules)).get("kind")
            if rules_kind != "prometheus":
                errors.append(f"sources.{name}.rules_source: {rules!r} is not a prometheus source")
    for name, approver in _mapping(doc.get("roster")).items():
        for g in _names(_mapping(approver).get("groups")):
            group(f"roster.{name}.groups", g)
    for tier, rule in _mapping(doc.get("approval_rules")).items():
        rule = _mapping(rule)
        for g in _names(rule.get("groups")):
            group(f"approval_rules.{tier}.groups", g)
        for key in ("require_group", "escalation_group"):
            group(f"approval_rules.{tier}.{key}", rule.get(key))
    for name, scope in _mapping(doc.get("recommenders")).items():
        scope = _mapping(scope)
        for action_name in _names(scope.get("actions")):
            if action_name != "*" and action_name not in actions:
                errors.append(f"recommenders.{name}.actions: unknown action {action_name!r}")
        for svc_name in _names(scope.get("services")):
            if svc_name != "*" and svc_name not in services:
                errors.append(f"recommenders.{name}.services: unknown service {svc_name!r}")
    for i, rule in enumerate(_list(doc.get("modes"))):
        action_name = _mapping(rule).get("action", "*")
        if isinstance(action_name, str) and action_name != "*" and action_name not in actions:
            errors.append(f"modes.{i}.action: unknown action {action_name!r}")
    for i, raw in enumerate(_list(doc.get("graduation"))):
        grad = _mapping(raw)
        for key, known in (("action", actions), ("service", services), ("environment", environments)):
            value = grad.get(key, "*")
            if isinstance(value, str) and value != "*" and value not in known:
                errors.append(f"graduation.{i}.{key}: unknown {key} {value!r}")
    for i, freeze in enumerate(_list(doc.get("freezes"))):
        for env in _names(_mapping(freeze).get("environments")):
            if env != "*" and env not in environments:
                errors.append(f"freezes.{i}.environments: unknown environment {env!r}")
        for action_name in _names(_mapping(freeze).get("actions")):
            if action_name != "*" and action_name not in actions:
                errors.append(f"freezes.{i}.actions: unknown action {action_name!r}")
    group("emergency_group", doc.get("emergency_group", "emergency"))
    return errors


def default_rules() -> dict[RiskTier, ApprovalRule]:
    return {
        RiskTier.LOW: ApprovalRule(approvals=1, unsigned_allowed=True),
        RiskTier.MEDIUM: ApprovalRule(approvals=1, unsigned_allowed=True),
        RiskTier.HIGH: ApprovalRule(approvals=2, require_owner=True),
        RiskTier.CRITICAL: ApprovalRule(approvals=2, require_group="security"),
    }


class Policy(_Model):
    version: int = 1
    approval_timeout: Duration = timedelta(hours=24)
    groups: list[str]
    services: dict[str, ServiceSpec]
    environments: dict[str, Environment] = Field(default_factory=lambda: {"lab": Environment()})
    sources: dict[str, SourceSpec]
    actions: dict[str, ActionSpec]
    roster: dict[str, Approver]
    risk: RiskSettings = Field(default_factory=RiskSettings)
    approval_rules: dict[RiskTier, ApprovalRule] = Field(default_factory=default_rules)
    recommenders: dict[str, RecommenderScope] = Field(default_factory=dict)
    modes: list[ModeRule] = Field(default_factory=list)
    # Earned autonomy: the mode a recommender's model version has earned for an action.
    graduation: list[GraduationRule] = Field(default_factory=list)
    freezes: list[FreezeWindow] = Field(default_factory=list)
    emergency_group: str = "emergency"
    notifier: Notifier = Field(default_factory=Notifier)
    dedup: Dedup = Field(default_factory=Dedup)
    # The longest a signed decision token may be valid (`expires_at - issued_at`): the
    # validator refuses a longer one and `interlock sign` will not make one.
    token_max_lifetime: Duration = timedelta(minutes=15)

    # Set by load_policy: the sha256 of the file the policy was read from.
    digest: str = ""

    @model_validator(mode="after")
    def _references(self) -> Policy:
        errors = reference_errors(self.model_dump(mode="json", exclude={"digest"}))
        for tier, rule in self.approval_rules.items():
            if rule.escalate_after >= rule.expire_after:
                errors.append(f"approval_rules.{tier.value}.escalate_after: must be before expire_after")
        if self.token_max_lifetime > timedelta(hours=24):
            errors.append("token_max_lifetime: must be at most 24h (a token approves one plan, now)")
        for tier in RiskTier:
            if tier not in self.approval_rules:
                errors.append(f"approval_rules.{tier.value}: missing")
        aliases: dict[str, str] = {}
        for name, svc in self.services.items():
            for alias in [name, *svc.aliases]:
                key = normalise_name(alias)
                if aliases.setdefault(key, name) != name:
                    errors.append(f"services.{name}.aliases: {alias!r} also names {aliases[key]!r}")
        if errors:
            raise PolicyReferenceErrors(errors)
        return self

    @property
    def version_id(self) -> str:
        return f"v{self.version}-{self.digest[:12]}" if self.digest else f"v{self.version}"

    def canonical_service(self, name: str) -> str | None:
        """The catalog's name for a service alias, or None: unknown names are refused, not guessed."""
        key = normalise_name(name)
        for canonical, svc in self.services.items():
            if key == normalise_name(canonical) or key in {normalise_name(a) for a in svc.aliases}:
                return canonical
        return None

    def service_hosts(self, service: str, environment: str) -> list[str]:
        """The inventory hosts (or groups) the catalog lists for a service in an environment."""
        spec = self.services.get(service)
        return list(spec.hosts.get(environment, [])) if spec else []

    def dependents(self, service: str) -> list[str]:
        """Every service that depends on `service`, transitively, sorted."""
        seen: set[str] = set()
        queue = list(self.services[service].dependents) if service in self.services else []
        while queue:
            dep = queue.pop()
            if dep in seen or dep == service:
                continue
            seen.add(dep)
            if dep in self.services:
                queue.extend(self.services[dep].dependents)
        return sorted(seen)

    def justifying_checks(self, action: str, source: str) -> list[str]:
        """The checks of `source` that may justify `action` (empty if the source may not)."""
        use = self.actions[action].evidence_sources.get(source)
        spec = self.sources.get(source)
        if use is None or spec is None:
            return []
        return list(spec.checks) if use.checks is None else list(use.checks)

    def check_name(self, source: str, ref: str) -> str:
        """The check a ref cites: the ref itself, or `deploy` for a changes source's
        `deploy:<service>:<release>`."""
        spec = self.sources.get(source)
        if spec is not None and spec.kind == "changes":
            return DEPLOY_CHECK if ref.strip().startswith(f"{DEPLOY_CHECK}:") else ref.strip()
        return ref.strip()

    def check_refusal(self, action: str, source: str, ref: str) -> str | None:
        """Why `ref` cannot be cited from `source` for `action`, or None if it may."""
        allowed = self.justifying_checks(action, source)
        name = self.check_name(source, ref)
        if name in allowed:
            return None
        spec = self.sources.get(source)
        if spec is not None and spec.kind == "changes":
            return f"{ref!r} is not a changes ref: expected 'deploy:<service>:<release>'"
        if spec is not None and name in spec.checks:
            return (
                f"check {name!r} of {source} does not justify {action} "
                f"(the policy allows: {', '.join(allowed) or 'none'})"
            )
        return (
            f"{ref!r} is not a check of {source}: cite one of {', '.join(allowed) or 'none'} "
            "by name (the policy defines each check's query and threshold; free-form "
            "expressions are refused)"
        )

    def settle_needed(self, source: str, check: str) -> timedelta:
        """How long `check` of `source` can take to clear after a fix (from the policy's
        declared intervals, ranges and `for`)."""
        spec = self.sources[source]
        rules = self.sources.get(spec.rules_source) if spec.rules_source else None
        return spec.settle_needed(check, rules)

    def warnings(self) -> list[str]:
        """Valid but doubtful settings, as 'path: reason' lines (`interlock policy check`)."""
        lines = []
        for i, rule in enumerate(self.graduation):
            ceiling = self.mode_for(rule.action, rule.environment, rule.service).mode
            if "auto" in rule.promote and ceiling is not Mode.AUTO:
                lines.append(
                    f"graduation.{i}.promote.auto: the modes rule for {rule.action} allows "
                    f"{ceiling.value}, so auto can never be earned (the modes rule is the ceiling)"
                )
        for name, action in self.actions.items():
            if action.settle_time is None:
                continue
            for src in action.evidence_sources:
                for check in self.justifying_checks(name, src):
                    need = self.settle_needed(src, check)
                    if need > action.settle_time:
                        lines.append(
                            f"actions.{name}.settle_time: {action.settle_time.total_seconds():g}s "
                            f"is shorter than the {need.total_seconds():g}s {src}.{check} can "
                            "take to clear; the after-change check waits the longer time"
                        )
        return lines

    def approval_timeout_for(self, action: str) -> timedelta:
        spec = self.actions[action]
        return spec.approval_timeout or self.approval_timeout

    def mode_for(self, action: str, environment: str, service: str) -> ModeRule:
        """The last matching mode rule wins; the default is `approve`."""
        chosen = ModeRule()
        for rule in self.modes:
            if rule.matches(action, environment, service):
                chosen = rule
        return chosen

    def graduation_for(self, action: str, environment: str, service: str) -> GraduationRule | None:
        """The last matching graduation rule, or None: the mode is then the `modes` rule's alone."""
        chosen = None
        for rule in self.graduation:
            if rule.matches(action, environment, service):
                chosen = rule
        return chosen

    def active_freezes(self, now: datetime, action: str, environment: str) -> list[str]:
        return [f.name for f in self.freezes if f.active(now, action, environment)]

    def scope_violations(self, proposal: Proposal, service: str) -> list[str]:
        """Why a recommender may not propose this (empty when it may)."""
        scope = self.recommenders.get(proposal.recommender)
        who = proposal.recommender
        if scope is None:
            if not self.recommenders:
                return []  # no scopes configured: every recommender may propose
            return [f"recommender: {who!r} has no scope in the policy"]
        problems = []
        if "*" not in scope.actions and proposal.action not in scope.actions:
            problems.append(f"scope: {who} may not propose {proposal.action}")
        if "*" not in scope.services and service not in scope.services:
            problems.append(f"scope: {who} may not propose changes to {service}")
        env = proposal.target.environment
        if "*" not in scope.environments and env not in scope.environments:
            problems.append(f"scope: {who} may not propose changes in {env}")
        return problems


def validate_against_policy(proposal: Proposal, policy: Policy) -> list[str]:
    """Everything the catalog refuses in a well-formed proposal, as 'field: reason' lines."""
    errors: list[str] = []
    action = policy.actions.get(proposal.action)
    if action is None:
        known = ", ".join(sorted(policy.actions))
        return [f"action: unknown action {proposal.action!r} (known: {known})"]
    service = policy.canonical_service(proposal.target.service)
    if service is None:
        errors.append(f"target.service: {proposal.target.service!r} is not a service in the catalog")
    elif proposal.target.environment not in policy.services[service].environments:
        errors.append(f"target.environment: {service} does not run in {proposal.target.environment!r}")
    if service is not None and proposal.target.hosts is not None:
        errors += host_errors(
            proposal.target.hosts,
            policy.service_hosts(service, proposal.target.environment),
            service,
            proposal.target.environment,
        )
    for name, value in proposal.parameters.items():
        spec = action.parameters.get(name)
        if spec is None:
            errors.append(f"parameters.{name}: unknown parameter for {proposal.action}")
        elif value not in spec.allowed:
            errors.append(f"parameters.{name}: {value!r} is not allowed (allowed: {', '.join(spec.allowed)})")
    for name in action.parameters:
        if name not in proposal.parameters:
            errors.append(f"parameters.{name}: required for {proposal.action}")
    for i, item in enumerate(proposal.evidence):
        if item.source not in action.evidence_sources:
            errors.append(
                f"evidence.{i}.source: {item.source!r} is not an approved source for "
                f"{proposal.action} (approved: {', '.join(action.evidence_sources)})"
            )
        elif why := policy.check_refusal(proposal.action, item.source, item.ref):
            errors.append(f"evidence.{i}.ref: {why}")
    return errors


def host_errors(hosts: list[str], fleet: list[str], service: str, environment: str) -> list[str]:
    """Why `target.hosts` cannot narrow this service's fleet, naming each unknown host."""
    if not fleet:
        return [f"target.hosts: the catalog lists no hosts for {service} in {environment!r}"]
    errors = [
        f"target.hosts: {h!r} is not a host of {service} in {environment!r} (hosts: {', '.join(fleet)})"
        for h in hosts
        if h not in fleet
    ]
    if len(set(hosts)) != len(hosts):
        errors.append("target.hosts: a host is named twice")
    return errors


class PolicyError(ValueError):
    """A policy file that cannot be used; `errors` has one 'path: reason' line per problem."""

    def __init__(self, path: Path | str, errors: list[str]):
        self.path = str(path)
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(errors))


def default_policy_text() -> str:
    return resources.files("interlock").joinpath("default_policy.yaml").read_text()


def parse_policy(text: str, path: Path | str = "<policy>") -> Policy:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(path, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise PolicyError(path, ["the policy must be a YAML mapping"])
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        errors = format_validation_errors(exc)
        # Field errors stop pydantic before the cross-reference check: run it on the raw
        # document so one `policy check` reports every problem, not the first kind only.
        errors += [e for e in reference_errors(raw) if e not in errors]
        raise PolicyError(path, errors) from exc
    return policy.model_copy(update={"digest": hashlib.sha256(text.encode()).hexdigest()})


def load_policy(path: Path | None) -> Policy:
    """The policy in the file (the built-in default for None), read anew on every call.

    Parsing and validating costs ~20 ms, and the worker's activities load the policy several
    times per proposal, so the parsed policy is kept for as long as the file's text is the same.
    Treat the result as read-only: it is shared.
    """
    if path is None:
        return _parsed(default_policy_text(), "<default policy>")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(path, [f"cannot read: {exc.strerror}"]) from exc
    return _parsed(text, str(path))


@functools.lru_cache(maxsize=8)
def _parsed(text: str, path: str) -> Policy:
    # Errors are not cached (lru_cache keeps only returned values): a bad file is re-read.
    return parse_policy(text, path)


def format_validation_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, PolicyReferenceErrors):
            lines += cause.errors  # each line already starts with its path
            continue
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "missing field"
        lines.append(f"{loc}: {msg}")
    return lines

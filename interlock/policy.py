"""The governance policy: action catalog, service catalog, evidence sources and roster.

Policy is data: a versioned YAML file validated by these models. Loading it is the only
I/O here (`load_policy`); everything else is pure so workflows and tests can use it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from interlock.models import SAFE_NAME, Proposal, RiskTier, Stage

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """'90s', '30m', '24h', '7d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 24h, 7d)")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def normalise_name(name: str) -> str:
    """Fold case, spaces and underscores so 'CHECKOUT API' and 'checkout_api' compare equal."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceSpec(_Model):
    owner: str
    aliases: list[str] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=lambda: ["lab"])
    dependents: list[str] = Field(default_factory=list)


class SourceSpec(_Model):
    kind: str  # http-health, alertmanager, prometheus, changes
    url: str = ""
    description: str = ""


class ActionSource(_Model):
    max_age: Duration = timedelta(minutes=30)


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


class ActionSpec(_Model):
    description: str = ""
    owner: str
    playbooks: Playbooks
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    base_risk: Annotated[int, Field(ge=0, le=100)]
    evidence_sources: dict[str, ActionSource]
    approval_timeout: Duration | None = None

    @model_validator(mode="after")
    def _parameter_names(self) -> ActionSpec:
        for name in self.parameters:
            if not SAFE_NAME.match(name) or name.lower().startswith("ansible_"):
                raise ValueError(f"parameter name {name!r} is not allowed")
            if name in ("service", "lab_root", "service_manager") or name.startswith("interlock_"):
                raise ValueError(f"parameter name {name!r} is reserved for Interlock")
        return self


class Approver(_Model):
    groups: list[str]
    public_key: str | None = None


class Environment(_Model):
    risk: Annotated[int, Field(ge=0, le=100)] = 0


class RiskSettings(_Model):
    """Tier boundaries: a score below `medium` is low, below `high` medium, and so on."""

    medium: int = 25
    high: int = 50
    critical: int = 75

    def tier(self, score: int) -> RiskTier:
        if score >= self.critical:
            return RiskTier.CRITICAL
        if score >= self.high:
            return RiskTier.HIGH
        if score >= self.medium:
            return RiskTier.MEDIUM
        return RiskTier.LOW


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

    # Set by load_policy: the sha256 of the file the policy was read from.
    digest: str = ""

    @model_validator(mode="after")
    def _references(self) -> Policy:
        errors: list[str] = []
        known_groups = set(self.groups)
        for name, svc in self.services.items():
            if svc.owner not in known_groups:
                errors.append(f"services.{name}.owner: unknown group {svc.owner!r}")
            for env in svc.environments:
                if env not in self.environments:
                    errors.append(f"services.{name}.environments: unknown environment {env!r}")
        for name, action in self.actions.items():
            if action.owner not in known_groups:
                errors.append(f"actions.{name}.owner: unknown group {action.owner!r}")
            for src in action.evidence_sources:
                if src not in self.sources:
                    errors.append(f"actions.{name}.evidence_sources: unknown source {src!r}")
        for name, approver in self.roster.items():
            for group in approver.groups:
                if group not in known_groups:
                    errors.append(f"roster.{name}.groups: unknown group {group!r}")
        aliases: dict[str, str] = {}
        for name, svc in self.services.items():
            for alias in [name, *svc.aliases]:
                key = normalise_name(alias)
                if aliases.setdefault(key, name) != name:
                    errors.append(f"services.{name}.aliases: {alias!r} also names {aliases[key]!r}")
        if errors:
            raise ValueError("; ".join(errors))
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

    def approval_timeout_for(self, action: str) -> timedelta:
        spec = self.actions[action]
        return spec.approval_timeout or self.approval_timeout


def validate_against_policy(proposal: Proposal, policy: Policy) -> list[str]:
    """Everything the catalog refuses in a well-formed proposal, as 'field: reason' lines."""
    errors: list[str] = []
    action = policy.actions.get(proposal.action)
    if action is None:
        known = ", ".join(sorted(policy.actions))
        return [f"action: unknown action {proposal.action!r} (known: {known})"]
    service = policy.canonical_service(proposal.target.service)
    if service is None:
        errors.append(
            f"target.service: {proposal.target.service!r} is not a service in the catalog"
        )
    elif proposal.target.environment not in policy.services[service].environments:
        errors.append(
            f"target.environment: {service} does not run in {proposal.target.environment!r}"
        )
    for name, value in proposal.parameters.items():
        spec = action.parameters.get(name)
        if spec is None:
            errors.append(f"parameters.{name}: unknown parameter for {proposal.action}")
        elif value not in spec.allowed:
            errors.append(
                f"parameters.{name}: {value!r} is not allowed (allowed: {', '.join(spec.allowed)})"
            )
    for name in action.parameters:
        if name not in proposal.parameters:
            errors.append(f"parameters.{name}: required for {proposal.action}")
    for i, item in enumerate(proposal.evidence):
        if item.source not in action.evidence_sources:
            errors.append(
                f"evidence.{i}.source: {item.source!r} is not an approved source for "
                f"{proposal.action} (approved: {', '.join(action.evidence_sources)})"
            )
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
        raise PolicyError(path, format_validation_errors(exc)) from exc
    return policy.model_copy(update={"digest": hashlib.sha256(text.encode()).hexdigest()})


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return parse_policy(default_policy_text(), "<default policy>")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(path, [f"cannot read: {exc.strerror}"]) from exc
    return parse_policy(text, path)


def format_validation_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "missing field"
        lines.append(f"{loc}: {msg}")
    return lines

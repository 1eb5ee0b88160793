"""Example proposals for any action of a policy (`interlock example`, the walk-through, the tests),
built from the policy itself: parameters from the action's allow-lists, evidence from its approved
sources and checks, the target from the service catalog, with a fresh `observed_at`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from interlock.policy import Policy, host_errors, parse_policy

# The lab's walk-through values, used where the policy in force allows them (the first allowed
# value otherwise): v1 is the lab's healthy release, dana a user the lab knows.
PREFERRED: dict[str, dict[str, str]] = {
    "rollback_deployment": {"release": "v1"},
    "change_access": {"user": "dana", "group": "payments-oncall", "change": "grant"},
}
RATIONALE = {
    "restart_service": (
        "checkout-api returns 5xx on 34% of requests since 10:02; a restart cleared the same "
        "leak in INC-1190."
    ),
    "rollback_deployment": "errors started right after the v2 deploy; v1 was stable for a week.",
    "change_access": "dana joins the payments on-call rotation this week.",
}
# What the lab's checks show while checkout-api is degraded (`interlock lab degrade checkout-api`).
SUMMARIES = {
    ("lab-monitor", "unhealthy"): "5xx ratio 0.34 over 10m",
    ("lab-alertmanager", "high_error_rate"): "HighErrorRate firing",
}
# Evidence from this many approved sources: two sources that agree are what an approver looks
# for; every item is checked at its source, so more only make the example slower to confirm.
EVIDENCE_SOURCES = 2
DEFAULT_SERVICE = "checkout-api"


class ExampleError(ValueError):
    """An example the policy cannot have (unknown action, service or host, a value off an
    allow-list); the message names what and says what is allowed."""


@cache
def _default_policy() -> Policy:
    from interlock.policy import default_policy_text

    return parse_policy(default_policy_text(), "<built-in policy>")


def example_parameters(
    policy: Policy, action: str, chosen: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every parameter the action declares: `chosen` where given (checked against the
    allow-list), else the walk-through's value where allowed, else the first allowed value."""
    spec = policy.actions[action]
    chosen = dict(chosen or {})
    for name, value in chosen.items():
        if name not in spec.parameters:
            declared = ", ".join(spec.parameters) or "none"
            raise ExampleError(f"{name!r} is not a parameter of {action} (parameters: {declared})")
        allowed = spec.parameters[name].allowed
        if value not in allowed:
            raise ExampleError(
                f"{name}={value!r} is not allowed for {action} (allowed: {', '.join(allowed)})"
            )
    params: dict[str, str] = {}
    for name, param in spec.parameters.items():
        preferred = PREFERRED.get(action, {}).get(name)
        default = preferred if preferred in param.allowed else param.allowed[0]
        params[name] = chosen.get(name, default)
    return params


def example_evidence(
    policy: Policy, action: str, service: str, parameters: Mapping[str, str], observed: str
) -> list[dict[str, str]]:
    """One item from each of the first approved sources, citing the first check that source may
    use for the action. A `changes` source (a deploy Interlock made) only when nothing else is
    approved: such a deploy exists only after one ran."""
    spec = policy.actions[action]
    usable = [s for s in spec.evidence_sources if s in policy.sources and policy.justifying_checks(action, s)]
    watching = [s for s in usable if policy.sources[s].kind != "changes"]
    items = []
    for source in (watching or usable)[:EVIDENCE_SOURCES]:
        check = policy.justifying_checks(action, source)[0]
        if policy.sources[source].kind == "changes":
            ref = f"{check}:{service}:{parameters.get('release', 'v1')}"
        else:
            ref = check
        described = getattr(policy.sources[source].checks.get(check), "description", "")
        items.append(
            {
                "source": source,
                "ref": ref,
                "observed_at": observed,
                "summary": SUMMARIES.get((source, check)) or described or f"{check} observed",
            }
        )
    return items


def example_target(
    policy: Policy,
    service: str | None = None,
    environment: str | None = None,
    hosts: Sequence[str] | None = None,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    """The target: a catalog service (checkout-api where it is listed, else the first one), one of
    its environments (the first unless named) and, when given, hosts of its fleet there. The
    service keeps the name it was given (an alias stays an alias). `strict`: a service outside
    the catalog is an error rather than kept as given."""
    if not policy.services:
        raise ExampleError("the policy's service catalog is empty")
    if service is None:
        service = DEFAULT_SERVICE if DEFAULT_SERVICE in policy.services else next(iter(policy.services))
    name = policy.canonical_service(service)
    if name is None:
        if strict:
            raise ExampleError(
                f"service {service!r} is not in the catalog (services: {', '.join(policy.services)})"
            )
        # Tests build refused proposals from examples: the name is kept as given.
        return {"service": service, "environment": environment or "lab"}
    environments = policy.services[name].environments
    if environment is None:
        if not environments:
            raise ExampleError(f"{name} runs in no environment in the catalog")
        environment = environments[0]
    elif environment not in environments:
        raise ExampleError(
            f"{name} does not run in {environment!r} (environments: {', '.join(environments) or 'none'})"
        )
    target: dict[str, Any] = {"service": service, "environment": environment}
    if hosts:
        problems = host_errors(list(hosts), policy.service_hosts(name, environment), name, environment)
        if problems:
            raise ExampleError(problems[0].removeprefix("target.hosts: "))
        target["hosts"] = list(hosts)
    return target


def rationale(action: str, description: str, service: str, parameters: Mapping[str, str]) -> str:
    """The walk-through's words where they fit (its service and values), else plain ones."""
    if action in RATIONALE and service == DEFAULT_SERVICE and dict(parameters) == PREFERRED.get(action, {}):
        return RATIONALE[action]
    chosen = ", ".join(f"{k}={v}" for k, v in parameters.items())
    return f"{description} on {service}{f' ({chosen})' if chosen else ''}: see the evidence below."


def example_proposal(
    action: str = "restart_service",
    proposal_id: str = "prop-0001",
    service: str | None = None,
    parameters: dict[str, str] | None = None,
    recommender: str = "triage-bot",
    observed_at: datetime | None = None,
    incident: str | None = "INC-1234",
    *,
    policy: Policy | None = None,
    environment: str | None = None,
    hosts: Sequence[str] | None = None,
    choose: Mapping[str, str] | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """A proposal `interlock propose` accepts under `policy` (default: the built-in one).

    `parameters` replaces the parameters as given (tests craft refused ones with it); `choose`
    picks allowed values and leaves the rest to their defaults. `strict` (the CLI): a service
    outside the catalog is an error."""
    policy = policy or _default_policy()
    if action not in policy.actions:
        raise ExampleError(f"unknown action {action!r} (actions: {', '.join(policy.actions)})")
    target = example_target(policy, service, environment, hosts, strict=strict)
    canonical = policy.canonical_service(target["service"]) or target["service"]
    params = example_parameters(policy, action, choose) if parameters is None else dict(parameters)
    observed = (observed_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    description = policy.actions[action].description.rstrip(".") or action
    return {
        "proposal_id": proposal_id,
        "recommender": recommender,
        "model_version": f"{recommender}/2026.11.2",
        "action": action,
        "target": target,
        "parameters": params,
        "rationale": rationale(action, description, canonical, params),
        "confidence": 0.82,
        "incident": incident,
        # Each item cites a check the policy defines for its source, about the target. The lab's
        # are confirmed exactly while the service is degraded (`interlock lab degrade
        # checkout-api`); otherwise the proposal ends rejected_by_checks.
        "evidence": example_evidence(policy, action, canonical, params, observed),
    }

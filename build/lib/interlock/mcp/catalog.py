"""What one recommender may propose, derived from the policy: the answer of `list_actions`.

Pure apart from reading the Ansible inventory's host names, so it is tested without a server.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from interlock.policy import Policy, RecommenderScope, SourceSpec

log = logging.getLogger(__name__)

# The shape of a `ref` each kind of source can confirm; the policy's description says more.
REF_FORMATS: dict[str, str] = {
    "http-health": "<service>/health",
    "alertmanager": '<AlertName>{service="<service>"}',
    "prometheus": '<metric>{service="<service>"} > <threshold>',
    "changes": "deploy:<service>:<release>",
}
_CHECKED = {
    "http-health": "Interlock calls the service's health endpoint; the check must be failing.",
    "alertmanager": "Interlock asks Alertmanager; the alert must be firing (not silenced).",
    "prometheus": "Interlock runs the query on Prometheus; it must return a matching series.",
    "changes": "Interlock looks up the deploys it ran itself; the deploy must be in its record.",
}


class ParameterView(BaseModel):
    name: str
    allowed: list[str] = Field(description="The only values accepted; anything else is refused.")
    description: str = ""
    required: bool = True


class EvidenceSourceView(BaseModel):
    source: str = Field(description="The value for `evidence[].source`.")
    kind: str
    description: str = ""
    ref_format: str = Field(description="What `evidence[].ref` looks like for this source.")
    max_age_seconds: float = Field(description="Evidence observed longer ago than this is not accepted.")
    how_checked: str


class ActionView(BaseModel):
    name: str = Field(description="The value for `action`.")
    description: str
    effect: str = Field(description="What running it does to the target system, step by step.")
    owner_group: str = Field(
        description="The group that owns the action (its people may be asked to approve)."
    )
    base_risk: int = Field(description="Risk points before dependents, environment, evidence and confidence.")
    parameters: list[ParameterView]
    evidence_sources: list[EvidenceSourceView] = Field(
        description="Cite at least one item from these; each is confirmed at its source."
    )
    approval_timeout_seconds: float = Field(description="Unless a person decides by then, it expires.")
    settle_seconds: float | None = Field(
        None,
        description="After it runs, how long the evidence may take to clear before it counts as unresolved.",
    )


class ServiceView(BaseModel):
    name: str = Field(description="The canonical name for `target.service` (aliases are accepted too).")
    aliases: list[str]
    environments: list[str] = Field(description="Values for `target.environment`.")
    owner_group: str
    dependents: list[str] = Field(description="Services that depend on it: they raise the risk.")


class ActionCatalog(BaseModel):
    """The remediations a recommender may propose, and what justifies each."""

    recommender: str
    may_propose: bool = Field(description="False: this recommender may propose nothing.")
    max_tier: str | None = Field(None, description="The highest risk tier it may propose, when limited.")
    actions: list[ActionView]
    services: list[ServiceView]
    environments: list[str]
    hosts: dict[str, list[str]] = Field(description="Hosts per environment in scope, from the inventory.")
    notes: list[str]


_NOTES = [
    "A person decides every proposal: proposing changes nothing until someone approves it.",
    "Every evidence item is fetched from its source; one the source does not confirm refuses the proposal.",
    "Parameters outside their allowed values, services outside the catalog and actions not listed here "
    "are refused before anything starts.",
]


def _effect(name: str, description: str, playbooks: Any) -> str:
    return (
        f"{description or name}. After approval Ansible runs {playbooks.run} on the target service, "
        f"then {playbooks.verify} to verify it; if verification fails it runs {playbooks.rollback} "
        "to undo the change. Before approval it only previews the change in check mode."
    )


def _allowed(names: list[str], everything: list[str]) -> list[str]:
    return list(everything) if "*" in names else [n for n in everything if n in names]


def _source_view(name: str, spec: SourceSpec, max_age: float) -> EvidenceSourceView:
    return EvidenceSourceView(
        source=name,
        kind=spec.kind,
        description=spec.description,
        ref_format=REF_FORMATS.get(spec.kind, ""),
        max_age_seconds=max_age,
        how_checked=_CHECKED.get(spec.kind, ""),
    )


def catalog_for(policy: Policy, recommender: str, hosts: dict[str, list[str]] | None = None) -> ActionCatalog:
    """What `recommender` may propose under `policy` (its scope, or everything when the policy
    lists no scopes at all, exactly as `Policy.scope_violations` decides)."""
    scope: RecommenderScope | None = policy.recommenders.get(recommender)
    if scope is None and policy.recommenders:
        return ActionCatalog(
            recommender=recommender,
            may_propose=False,
            actions=[],
            services=[],
            environments=[],
            hosts={},
            notes=[f"{recommender} has no scope in the policy: every proposal from it is refused."],
        )
    scope = scope or RecommenderScope(actions=["*"])
    action_names = _allowed(scope.actions, sorted(policy.actions))
    environments = _allowed(scope.environments, list(policy.environments))
    services = [
        ServiceView(
            name=name,
            aliases=list(spec.aliases),
            environments=[e for e in spec.environments if e in environments],
            owner_group=spec.owner,
            dependents=policy.dependents(name),
        )
        for name, spec in policy.services.items()
        if (name in scope.services or "*" in scope.services)
        and any(e in environments for e in spec.environments)
    ]
    actions = []
    for name in action_names:
        spec = policy.actions[name]
        actions.append(
            ActionView(
                name=name,
                description=spec.description,
                effect=_effect(name, spec.description, spec.playbooks),
                owner_group=spec.owner,
                base_risk=spec.base_risk,
                parameters=[
                    ParameterView(name=p, allowed=list(ps.allowed), description=ps.description)
                    for p, ps in spec.parameters.items()
                ],
                evidence_sources=[
                    _source_view(src, policy.sources[src], rule.max_age.total_seconds())
                    for src, rule in spec.evidence_sources.items()
                ],
                approval_timeout_seconds=policy.approval_timeout_for(name).total_seconds(),
                settle_seconds=spec.settle_time.total_seconds() if spec.settle_time else None,
            )
        )
    in_scope = {e for s in services for e in s.environments}
    return ActionCatalog(
        recommender=recommender,
        may_propose=bool(actions and services),
        max_tier=scope.max_tier.value if recommender in policy.recommenders else None,
        actions=actions,
        services=services,
        environments=[e for e in environments if e in in_scope],
        hosts={env: names for env, names in (hosts or {}).items() if env in in_scope},
        notes=list(_NOTES),
    )


def inventory_hosts(inventory: Path) -> dict[str, list[str]]:
    """Host names per top-level inventory group (groups are named after environments).

    Only names: host variables may hold addresses and credentials an agent has no use for.
    """
    try:
        doc = yaml.safe_load(inventory.read_text())
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read the inventory %s: %s", inventory, exc)
        return {}
    if not isinstance(doc, dict):
        return {}
    hosts: dict[str, list[str]] = {}
    for group, body in doc.items():
        members = body.get("hosts") if isinstance(body, dict) else None
        if isinstance(group, str) and isinstance(members, dict):
            hosts[group] = sorted(str(h) for h in members)
    return hosts

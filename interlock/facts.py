"""Per-host facts: what an action's run playbook reports about each host (with `set_stats`) for
its verify and rollback playbooks, declared by name and type in the policy.

Pure: parses ansible-runner's events and checks them against the declaration, no I/O. Facts are
read from each host's own `set_stats` task result, never from Ansible's aggregate, so a
multi-host run cannot mix one host's values into another's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from interlock.models import SAFE_NAME, FactValue, HostFacts

__all__ = ["FactSpec", "FactType", "FactValue", "HostFacts"]

FactType = Literal["str", "int", "bool", "list[str]"]

# Longest list and string a fact may hold: facts travel in workflow history and extra vars.
MAX_LIST = 50
MAX_STR = 256


class FactSpec(BaseModel):
    """One declared fact: its type, and whether null is a value it may report (`pid` in check
    mode, `previous_pid` when the service was down)."""

    model_config = ConfigDict(extra="forbid")

    type: FactType
    nullable: bool = False
    description: str = ""


def fact_name_problem(name: str) -> str | None:
    """Why `name` cannot be a fact (None when it can): facts are variable names inside
    `interlock_facts[host]`, so they follow the same rules as parameters."""
    if not SAFE_NAME.match(name) or name.lower().startswith("ansible_"):
        return f"fact name {name!r} is not a safe name (letters, digits, '.', '_', '-'; no 'ansible_')"
    if name.startswith("interlock_"):
        return f"fact name {name!r} is reserved for Interlock"
    return None


def shape(value: Any) -> str:
    """A value's shape in the words a policy author uses: null, int, bool, str, list[str], ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        inner = {shape(v) for v in value}
        return f"list[{'|'.join(sorted(inner))}]" if inner else "list[str]"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def value_problem(value: Any, spec: FactSpec) -> str | None:
    """Why `value` is not of the declared type (None when it is). Never coerced: a "123" is a
    str, not an int, so the playbook has to report what it declares."""
    if value is None:
        return None if spec.nullable else f"expected {spec.type}, got null"
    got = shape(value)
    if got != spec.type:
        return f"expected {spec.type}{' or null' if spec.nullable else ''}, got {got}"
    if isinstance(value, list) and len(value) > MAX_LIST:
        return f"expected at most {MAX_LIST} items, got {len(value)}"
    texts = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    for text in texts:
        # Facts reach Ansible as extra vars, which it templates: names only, never free text.
        if text != "" and (not SAFE_NAME.match(text) or len(text) > MAX_STR):
            return f"{text[:40]!r} is not a safe value (letters, digits, '.', '_', '-')"
    return None


def reported(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each host's own `set_stats` data, from its `runner_on_ok` events, later tasks overriding
    earlier ones. Ansible's aggregate (`playbook_on_stats`) is never read."""
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        data = event.get("event_data") or {}
        res = data.get("res") or {}
        stats = res.get("ansible_stats") if isinstance(res, dict) else None
        host = data.get("host")
        if not isinstance(stats, dict) or not isinstance(host, str) or not host:
            continue
        values = stats.get("data")
        if isinstance(values, dict):
            out.setdefault(host, {}).update({str(k): v for k, v in values.items()})
    return out


def check_facts(
    raw: Mapping[str, Mapping[str, Any]],
    declared: Mapping[str, FactSpec],
    hosts: Iterable[str],
    require_all: bool,
) -> tuple[HostFacts, list[str]]:
    """The declared facts of `hosts`, and every problem as 'host: fact 'name': why'.

    `require_all`: every declared fact of every host must be reported (a preview, an execution).
    Otherwise (facts handed on at the door to Ansible) a missing fact is left to the playbook,
    but whatever is there must be declared and of its type. Undeclared facts a playbook reports
    are dropped, never passed on."""
    facts: HostFacts = {}
    problems: list[str] = []
    for host in hosts:
        mine = raw.get(host)
        if mine is None:
            if require_all and declared:
                problems.append(f"{host}: no facts reported (declared: {', '.join(sorted(declared))})")
            continue
        kept: dict[str, FactValue] = {}
        for name, spec in sorted(declared.items()):
            if name not in mine:
                if require_all:
                    problems.append(f"{host}: fact {name!r}: expected {spec.type}, not reported")
                continue
            why = value_problem(mine[name], spec)
            if why:
                problems.append(f"{host}: fact {name!r}: {why}")
            else:
                kept[name] = mine[name]
        facts[host] = kept
    return facts, problems


def refused_handover(
    given: Mapping[str, Mapping[str, Any]], declared: Mapping[str, FactSpec], hosts: list[str] | None
) -> list[str]:
    """Why facts handed to a verify or rollback run cannot reach Ansible (empty when they can):
    a host outside the run, an undeclared fact, a value not of its type."""
    problems: list[str] = []
    for host, mine in sorted(given.items()):
        if not SAFE_NAME.match(host) or host.lower().startswith("ansible_"):
            problems.append(f"host {host[:40]!r} is not a safe inventory name")
            continue
        if hosts is not None and host not in hosts:
            problems.append(f"{host}: not a host of this run ({', '.join(hosts) or 'none'})")
        problems += [f"{host}: fact {name!r}: not declared" for name in sorted(set(mine) - set(declared))]
    _, typed = check_facts(given, declared, sorted(given), require_all=False)
    return problems + typed

"""What an evidence item's `ref` may be: the name of a check the policy defines for its source
(its query, alert or health meaning comes from the policy, never from the recommender), or,
for a ``changes`` source, ``deploy:<service>:<release>`` (a record to look up, not a test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HTTP_HEALTH = "http-health"
ALERTMANAGER = "alertmanager"
PROMETHEUS = "prometheus"
CHANGES = "changes"
KINDS = (HTTP_HEALTH, ALERTMANAGER, PROMETHEUS, CHANGES)
CHANGE_GRAMMAR = "'deploy:<service>:<release>', e.g. 'deploy:checkout-api:v2'"


class RefError(ValueError):
    """A ref that names no check of its source (or a malformed changes ref)."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str

    def render(self) -> str:
        """The matcher in the quoted form both Alertmanager and PromQL accept."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class ChangeClaim:
    service: str
    release: str


_NAME = r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}"
_CHANGE = re.compile(rf"^deploy:({_NAME}):([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})$")


def parse_change(ref: str) -> ChangeClaim:
    m = _CHANGE.match(ref.strip())
    if m is None:
        raise RefError(f"cannot parse ref {ref!r} for a changes source: expected {CHANGE_GRAMMAR}")
    return ChangeClaim(service=m.group(1).strip(), release=m.group(2))

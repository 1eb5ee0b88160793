"""The grammar of an evidence item's `ref`, one per source kind, parsed into typed claims.

- ``http-health``: ``<service>/health`` (the lab monitor's ``/health/<service>`` proxy) or an
  absolute path on the source such as ``/health/checkout-api``. Claims the service is unhealthy.
- ``alertmanager``: ``<alertname>``, ``<alertname>{<matchers>}`` or ``<matchers>`` including
  ``alertname``; a matcher is ``label<op>value`` with op ``=``, ``!=``, ``=~`` or ``!~`` and the
  value bare or double-quoted, joined by commas: ``HighErrorRate{service="checkout-api"}``,
  ``alertname=HighErrorRate,service=checkout-api``. ``service`` may only use ``=``.
  Claims the alert is active for the target.
- ``prometheus``: ``<promql> <op> <threshold>`` with op ``>``, ``>=``, ``<`` or ``<=``:
  ``error_ratio{service="checkout-api"} > 0.05``. Claims a sample for the target is on that side.
- ``changes``: ``deploy:<service>:<release>``, e.g. ``deploy:checkout-api:v2``. Claims that
  release was deployed to the service recently.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

HTTP_HEALTH = "http-health"
ALERTMANAGER = "alertmanager"
PROMETHEUS = "prometheus"
CHANGES = "changes"

# Shown in every refusal of an unparseable ref, so the recommender can fix its output.
GRAMMAR: dict[str, str] = {
    HTTP_HEALTH: "'<service>/health' or an absolute path such as '/health/checkout-api'",
    ALERTMANAGER: (
        "'<alertname>', '<alertname>{label=\"value\", ...}' or "
        "'alertname=<name>,label=value,...', e.g. 'HighErrorRate{service=\"checkout-api\"}'"
    ),
    PROMETHEUS: (
        "'<promql> <op> <threshold>' with op >, >=, < or <=, "
        "e.g. 'error_ratio{service=\"checkout-api\"} > 0.05'"
    ),
    CHANGES: "'deploy:<service>:<release>', e.g. 'deploy:checkout-api:v2'",
}
KINDS = tuple(GRAMMAR)


class RefError(ValueError):
    """A ref that does not follow its kind's grammar; the message names the grammar."""

    def __init__(self, kind: str, ref: str, problem: str = "") -> None:
        self.kind = kind
        self.ref = ref
        detail = f" ({problem})" if problem else ""
        super().__init__(
            f"cannot parse ref {ref!r} for a {kind} source{detail}: expected {GRAMMAR[kind]}"
        )


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
class HealthClaim:
    """Either a service (checked at ``/health/<canonical name>``) or an absolute path."""

    service: str | None
    path: str | None

    def path_for(self, canonical: str) -> str:
        return self.path if self.path is not None else f"/health/{canonical}"


@dataclass(frozen=True)
class AlertClaim:
    alertname: str
    service: str | None
    # Every matcher besides alertname and service; the source applies them.
    matchers: tuple[Matcher, ...] = ()


@dataclass(frozen=True)
class QueryClaim:
    query: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return COMPARISONS[self.op](value, self.threshold)


@dataclass(frozen=True)
class ChangeClaim:
    service: str
    release: str


Claim = HealthClaim | AlertClaim | QueryClaim | ChangeClaim

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

_NAME = r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}"
_HEALTH_SERVICE = re.compile(rf"^({_NAME})/health/?$")
# An absolute path only: no scheme or host (the source's URL comes from the policy), no
# query, no '..' that would climb out of the source's base path.
_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~%/-]*$")
_ALERTNAME = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$", re.DOTALL)
_MATCHER = re.compile(
    r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"{}=!~]+))\s*'
)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# The last comparison before a trailing number: PromQL inside the query may hold its own.
_THRESHOLD = re.compile(rf"^(.*\S)\s*(>=|<=|>|<)\s*({_NUMBER})\s*$", re.DOTALL)
_CHANGE = re.compile(rf"^deploy:({_NAME}):([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})$")


def parse_ref(kind: str, ref: str) -> Claim:
    """Parse `ref` by the grammar of `kind`; raises RefError (or ValueError for unknown kinds)."""
    parsers: dict[str, Callable[[str], Claim]] = {
        HTTP_HEALTH: parse_health,
        ALERTMANAGER: parse_alert,
        PROMETHEUS: parse_query,
        CHANGES: parse_change,
    }
    if kind not in parsers:
        raise ValueError(f"unknown source kind {kind!r} (known: {', '.join(KINDS)})")
    return parsers[kind](ref)


def parse_health(ref: str) -> HealthClaim:
    text = ref.strip()
    if m := _HEALTH_SERVICE.match(text):
        service = m.group(1).strip()
        return HealthClaim(service=service, path=None)
    if _HEALTH_PATH.match(text) and ".." not in text.split("/"):
        return HealthClaim(service=None, path=text)
    raise RefError(HTTP_HEALTH, ref)


def parse_matchers(text: str, kind: str = ALERTMANAGER, ref: str | None = None) -> list[Matcher]:
    """Comma-separated ``label<op>value`` pairs, values bare or double-quoted with escapes."""
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(text):
        m = _MATCHER.match(text, pos)
        if m is None:
            raise RefError(kind, ref or text, f"bad matcher at {text[pos:]!r}")
        raw = m.group(3) if m.group(3) is not None else m.group(4)
        matchers.append(Matcher(m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", raw)))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise RefError(kind, ref or text, f"expected ',' at {text[pos:]!r}")
            pos += 1
            # A trailing comma is what PromQL allows too.
            if not text[pos:].strip():
                break
    return matchers


def parse_alert(ref: str) -> AlertClaim:
    text = ref.strip()
    head = _ALERTNAME.match(text)
    if head is not None:
        matchers = [Matcher("alertname", "=", head.group(1))]
        matchers += parse_matchers(head.group(2) or "", ALERTMANAGER, ref)
    elif text and "{" not in text and "}" not in text:
        matchers = parse_matchers(text, ALERTMANAGER, ref)
    else:
        raise RefError(ALERTMANAGER, ref)

    names = [m for m in matchers if m.label == "alertname"]
    services = [m for m in matchers if m.label == "service"]
    if len(names) != 1 or names[0].op != "=" or not names[0].value:
        raise RefError(ALERTMANAGER, ref, "exactly one alertname=<name> is required")
    if len(services) > 1 or any(m.op != "=" or not m.value for m in services):
        raise RefError(ALERTMANAGER, ref, 'the service must be one service="<name>"')
    for m in matchers:
        if m.op in ("=~", "!~"):
            try:
                re.compile(m.value)
            except re.error as err:
                raise RefError(ALERTMANAGER, ref, f"bad regexp {m.value!r}: {err}") from err
    others = tuple(m for m in matchers if m.label not in ("alertname", "service"))
    return AlertClaim(
        alertname=names[0].value,
        service=services[0].value if services else None,
        matchers=others,
    )


def parse_query(ref: str) -> QueryClaim:
    m = _THRESHOLD.match(ref.strip())
    if m is None:
        raise RefError(PROMETHEUS, ref)
    query = m.group(1).strip()
    # 'x > > 1' or a query that is only an operator is not PromQL worth sending.
    if not query or query[-1] in "<>=!" or not re.search(r"[A-Za-z0-9_)]", query):
        raise RefError(PROMETHEUS, ref)
    return QueryClaim(query=query, op=m.group(2), threshold=float(m.group(3)))


def parse_change(ref: str) -> ChangeClaim:
    m = _CHANGE.match(ref.strip())
    if m is None:
        raise RefError(CHANGES, ref)
    return ChangeClaim(service=m.group(1).strip(), release=m.group(2))

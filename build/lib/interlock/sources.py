"""The evidence sources a policy names: where each is, how to reach it with credentials, and
the checks it can confirm. A recommender cites a check by name; its query, comparison and
threshold live here, so a recommender cannot write its own tautology.

Pure pydantic: secrets are named (an environment variable or a file), never held.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from interlock.durations import Duration

SERVICE_PLACEHOLDER = "$service"
# The one check a `changes` source has: its ref is `deploy:<service>:<release>`.
DEPLOY_CHECK = "deploy"
CHECK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_literal(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError("a secret is never written in the policy: use {env: VARIABLE} or {file: PATH}")
    return value


class SecretRef(_Model):
    """Where a secret is read from when a source is asked: an environment variable or a file."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def describe(self) -> str:
        return f"env {self.env}" if self.env is not None else f"file {self.file}"


Secret = Annotated[SecretRef, BeforeValidator(_not_literal)]


class BasicAuth(_Model):
    username: str
    password: Secret


class ClientCert(_Model):
    cert_file: str
    key_file: str | None = None


class PrometheusCheck(_Model):
    """A PromQL query about one service and the side of a threshold that shows the problem."""

    type: Literal["prometheus"] = "prometheus"
    query: str
    above: float | None = None
    below: float | None = None
    description: str = ""
    # The longest range in the query (e.g. 2m for rate(...[2m])): how long its value lags a fix.
    range: Duration | None = None
    # Explicit time the value needs to clear after a fix (overrides the derived one).
    settle: Duration | None = None

    @model_validator(mode="after")
    def _shape(self) -> PrometheusCheck:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if SERVICE_PLACEHOLDER not in self.query:
            raise ValueError(f"the query must name the service as {SERVICE_PLACEHOLDER}")
        return self

    @property
    def comparison(self) -> str:
        return f"> {self.above:g}" if self.above is not None else f"< {self.below:g}"

    def holds(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below  # type: ignore[operator]


class AlertCheck(_Model):
    """An Alertmanager alert (by name, with optional extra label matchers) for the service."""

    type: Literal["alertmanager"] = "alertmanager"
    alert: Annotated[str, Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$")]
    matchers: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    # The alert rule's longest range and its `for`: how long it lags a fix.
    range: Duration | None = None
    for_: Duration | None = Field(default=None, alias="for")
    settle: Duration | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HealthCheck(_Model):
    """A health endpoint: unhealthy when it answers 5xx, or 2xx with a JSON `status` other
    than `healthy_status`."""

    type: Literal["http-health"] = "http-health"
    path: str = "/health/$service"
    healthy_status: str = "ok"
    description: str = ""
    settle: Duration | None = None

    @model_validator(mode="after")
    def _path(self) -> HealthCheck:
        if not self.path.startswith("/") or ".." in self.path.split("/") or "?" in self.path:
            raise ValueError("path must be an absolute path on the source, without '..' or '?'")
        return self


class DeployCheck(_Model):
    type: Literal["changes"] = "changes"
    description: str = ""


Check = Annotated[PrometheusCheck | AlertCheck | HealthCheck | DeployCheck, Field(discriminator="type")]


class SourceSpec(_Model):
    """Where evidence of one kind is confirmed. `url` (or several `urls`: an Alertmanager
    cluster, any reachable one answers) is the base URL, or `lab://monitor` for the lab;
    `changes` needs none: it is Interlock's own record of the executions it ran."""

    kind: Literal["http-health", "alertmanager", "prometheus", "changes"]
    url: str = ""
    urls: list[str] = Field(default_factory=list)
    description: str = ""
    # The label that names a service at this source (service, app, job, ...).
    service_label: Annotated[str, Field(pattern=LABEL.pattern)] = "service"
    checks: dict[str, Check] = Field(default_factory=dict)
    # Credentials and TLS, read when the source is asked, never stored or recorded.
    headers: dict[str, Secret] = Field(default_factory=dict)
    bearer_token: Secret | None = None
    basic_auth: BasicAuth | None = None
    # Mimir/Cortex tenant, sent as X-Scope-OrgID (an id, not a secret).
    tenant: str | None = None
    ca_file: str | None = None
    client_cert: ClientCert | None = None
    timeout: Duration = timedelta(seconds=2)
    path_prefix: str = ""
    # Timing that decides how long a fix takes to show (Prometheus' defaults are 1m each).
    scrape_interval: Duration = timedelta(minutes=1)
    evaluation_interval: Duration = timedelta(minutes=1)
    # Alertmanager: the Prometheus source whose alert rules fire its alerts; after a change it
    # is asked about an alert that Alertmanager reports silenced or inhibited.
    rules_source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _tag_checks(cls, data: Any) -> Any:
        # Each check is read by its source's kind, so `checks` needs no `type` in the YAML.
        if isinstance(data, dict) and isinstance(data.get("checks"), dict):
            kind = data.get("kind")
            data = {
                **data,
                "checks": {
                    name: ({"type": kind, **spec} if isinstance(spec, dict) else spec)
                    for name, spec in data["checks"].items()
                },
            }
        return data

    @model_validator(mode="after")
    def _shape(self) -> SourceSpec:
        if self.kind == "changes":
            self.checks = {DEPLOY_CHECK: DeployCheck()}
            return self
        if not self.all_urls:
            raise ValueError(f"a {self.kind} source needs a url")
        for url in self.all_urls:
            _check_url(url)
        if not self.checks:
            raise ValueError(f"a {self.kind} source needs checks: recommenders cite them by name")
        for name in self.checks:
            if not CHECK_NAME.match(name):
                raise ValueError(f"check name {name!r}: use letters, digits, '_' or '-'")
        for name in self.headers:
            if not HEADER.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if self.bearer_token and self.basic_auth:
            raise ValueError("give bearer_token or basic_auth, not both")
        if self.path_prefix and not self.path_prefix.startswith("/"):
            raise ValueError("path_prefix must start with '/'")
        if self.rules_source is not None and self.kind != "alertmanager":
            raise ValueError("rules_source is for alertmanager sources")
        return self

    @property
    def all_urls(self) -> list[str]:
        return ([self.url] if self.url else []) + list(self.urls)

    def secrets(self) -> list[SecretRef]:
        found = list(self.headers.values())
        found += [s for s in (self.bearer_token,) if s is not None]
        if self.basic_auth is not None:
            found.append(self.basic_auth.password)
        return found

    def settle_needed(self, check: str, rules: SourceSpec | None = None) -> timedelta:
        """How long after a fix the check can take to stop showing the problem."""
        spec = self.checks[check]
        if isinstance(spec, DeployCheck):
            return timedelta(0)
        if spec.settle is not None:
            return spec.settle
        if isinstance(spec, HealthCheck):
            return timedelta(0)
        if isinstance(spec, PrometheusCheck):
            # One scrape to see the fix, then the query's range to forget the fault.
            return self.scrape_interval + (spec.range or timedelta(0))
        timing = rules or self
        return (
            timing.scrape_interval
            + timing.evaluation_interval
            + (spec.range or timedelta(0))
            + (spec.for_ or timedelta(0))
        )


def _check_url(url: str) -> None:
    if url.startswith("lab://"):
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"source URL {redact_url(url)!r} is not an http(s) URL or lab://monitor")
    if parts.username is not None or parts.password is not None:
        # Userinfo would be written wherever the URL is: the audit trail, history, logs.
        raise ValueError(
            f"source URL {redact_url(url)!r} carries credentials: use basic_auth with "
            "{env: VARIABLE} or {file: PATH} instead"
        )


def redact_url(url: str) -> str:
    """The URL without its userinfo (user:password@), the form that may be recorded."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


class ActionSource(_Model):
    max_age: Duration = timedelta(minutes=30)
    # The source's checks that justify the action; None: every check the source defines.
    checks: list[str] | None = None

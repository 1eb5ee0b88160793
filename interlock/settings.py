"""Every knob of Interlock, read from the environment (one settings model, one place).

A wrong setting fails when the settings are loaded, naming the environment variable and the
reason, so a misconfigured worker stops at start instead of failing on its first proposal.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

import interlock.playbooks

# The built-in playbooks: package data of interlock.playbooks (the top-level playbooks/ folder of a
# source checkout, or site-packages/interlock/playbooks when installed from a wheel).
BUILTIN_PLAYBOOKS = Path(interlock.playbooks.__file__).resolve().parent
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Temporal warns at 10,240 events; continue-as-new must happen well before that.
HISTORY_WARNING_EVENTS = 10_240
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class SettingsError(ValueError):
    """A setting is wrong; the message names the environment variable and the reason."""


def _existing_file(path: Path | None) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    return path


class _DocumentedVariablesOnly(EnvSettingsSource):
    """Read each field only from its documented variable.

    Fields may be given by name in code (`Settings(home=...)`), but the environment must not fill
    them by name: `home` would otherwise be read from $HOME.
    """

    def _extract_field_info(
        self, field: FieldInfo, field_name: str, model_config: Any = None
    ) -> list[tuple[str, str, bool]]:
        found = super()._extract_field_info(field, field_name, model_config)
        alias = field.validation_alias
        if not isinstance(alias, AliasChoices):
            return found
        documented = {str(choice).lower() for choice in alias.choices}
        return [entry for entry in found if entry[1].lower() in documented]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _DocumentedVariablesOnly(settings_cls))

    temporal_address: str = Field(
        "localhost:7233",
        validation_alias=_env("TEMPORAL_ADDRESS"),
        description="Temporal frontend, host:port.",
    )
    temporal_namespace: str = Field(
        "default",
        min_length=1,
        validation_alias=_env("TEMPORAL_NAMESPACE"),
        description="Temporal namespace.",
    )
    dedup_namespace: str | None = Field(
        None,
        min_length=1,
        validation_alias=_env("INTERLOCK_DEDUP_NAMESPACE"),
        description="Namespace of the dedup claims, kept out of the proposals' list (default: "
        "<namespace>-dedup; missing: claims go in the proposals' namespace, with a warning).",
    )
    temporal_tls_cert: Path | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_CERT"),
        description="Client certificate (PEM) for mTLS; needs TEMPORAL_TLS_KEY.",
    )
    temporal_tls_key: Path | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_KEY"),
        description="Client private key (PEM) for mTLS; needs TEMPORAL_TLS_CERT.",
    )
    temporal_tls_ca: Path | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_CA"),
        description="CA bundle to verify the server (default: the system roots).",
    )
    temporal_tls_server_name: str | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_SERVER_NAME"),
        description="Server name to verify, when it differs from the address's host.",
    )
    temporal_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("TEMPORAL_API_KEY"),
        description="Temporal Cloud API key (turns TLS on).",
    )
    task_queue: str = Field(
        "interlock",
        min_length=1,
        validation_alias=_env("INTERLOCK_TASK_QUEUE"),
        description="Task queue of the workflows; playbooks run on '<queue>.playbooks'.",
    )

    home: Path = Field(
        Path(".interlock"),
        validation_alias=_env("INTERLOCK_HOME"),
        description="State folder: keys, artifacts, audit head file, local databases.",
    )
    policy_file: Path | None = Field(
        None,
        validation_alias=_env("INTERLOCK_POLICY"),
        description="Policy YAML (default: the state folder's policy.yaml, else the built-in one).",
    )
    playbooks_dir: Path = Field(
        BUILTIN_PLAYBOOKS,
        validation_alias=_env("INTERLOCK_PLAYBOOKS"),
        description="ansible-runner private_data_dir with the playbooks.",
    )
    lab_root: Path | None = Field(
        None,
        validation_alias=_env("INTERLOCK_LAB_ROOT"),
        description="The local lab's folder (default: <state folder>/lab).",
    )
    service_manager: str = Field(
        "lab",
        validation_alias=_env("INTERLOCK_SERVICE_MANAGER"),
        description="How playbooks manage services: lab or systemd.",
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=_env("INTERLOCK_DATABASE_URL"),
        description="SQLAlchemy URL of the audit store and pauses (default: SQLite in the state folder).",
    )
    audit_anchor: SecretStr | None = Field(
        None,
        validation_alias=_env("INTERLOCK_AUDIT_ANCHOR"),
        description="Second place for the signed audit checkpoints: a folder, or a postgresql:// URL of "
        "another database (default: <state folder>/audit-anchor).",
    )
    audit_signing_key: Path | None = Field(
        None,
        validation_alias=_env("INTERLOCK_AUDIT_SIGNING_KEY"),
        description="Ed25519 private key (PEM) the worker signs audit checkpoints with (default: "
        "<state folder>/keys/audit-signing.key, made on the worker's first start).",
    )
    audit_public_key: str | None = Field(
        None,
        validation_alias=_env("INTERLOCK_AUDIT_PUBLIC_KEY"),
        description="Public key(s) `audit verify` trusts, base64 or .pub/.pem files, comma-separated "
        "(default: the signing key's .pub).",
    )

    playbook_timeout_seconds: int = Field(
        600,
        gt=0,
        validation_alias=_env("INTERLOCK_PLAYBOOK_TIMEOUT"),
        description="Seconds a playbook may run before it is stopped.",
    )
    playbook_idle_timeout_seconds: int = Field(
        120,
        gt=0,
        validation_alias=_env("INTERLOCK_PLAYBOOK_IDLE_TIMEOUT"),
        description="Seconds a playbook may print nothing before it is stopped.",
    )
    artifacts_keep_seconds: int = Field(
        86400,
        gt=0,
        validation_alias=_env("INTERLOCK_ARTIFACTS_KEEP"),
        description="Seconds ansible-runner's artifacts (events, stdout) are kept before they are removed.",
    )
    ssh_key_file: Path | None = Field(
        None,
        validation_alias=_env("INTERLOCK_SSH_KEY_FILE"),
        description="Private key playbooks reach SSH hosts with (a worker-side file, outside the playbooks).",
    )
    ssh_known_hosts_file: Path | None = Field(
        None,
        validation_alias=_env("INTERLOCK_SSH_KNOWN_HOSTS"),
        description="known_hosts file SSH host keys are checked against (default: ssh's own).",
    )
    max_concurrent_playbooks: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        gt=0,
        validation_alias=_env("INTERLOCK_MAX_CONCURRENT_PLAYBOOKS"),
        description="Playbooks one worker runs at once (default: its CPU count).",
    )
    max_concurrent_activities: int = Field(
        50,
        gt=0,
        validation_alias=_env("INTERLOCK_MAX_CONCURRENT_ACTIVITIES"),
        description="Other activities (checks, audit, notifications) one worker runs at once.",
    )
    max_cached_workflows: int = Field(
        500,
        ge=0,
        validation_alias=_env("INTERLOCK_MAX_CACHED_WORKFLOWS"),
        description="Proposals one worker keeps in memory (~0.4 MB each); others are replayed when needed.",
    )
    shutdown_grace_seconds: float = Field(
        60.0,
        ge=0,
        validation_alias=_env("INTERLOCK_SHUTDOWN_GRACE"),
        description="On SIGTERM, seconds running activities get to finish before they are handed back.",
    )
    history_event_limit: int = Field(
        5000,
        ge=20,
        lt=HISTORY_WARNING_EVENTS,
        validation_alias=_env("INTERLOCK_HISTORY_EVENT_LIMIT"),
        description="A proposal awaiting approval continues as new past this many history events.",
    )
    # `interlock up` serves the governance metrics at http://127.0.0.1:PORT/metrics; 0 turns it off.
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        validation_alias=_env("INTERLOCK_METRICS_PORT"),
        description="Port of the Prometheus /metrics endpoint `interlock up` serves (0: off).",
    )
    # Each `interlock worker` may serve its own series (evidence fetches per source) on this port;
    # the store's figures come from one exporter, so replicas never double count them.
    worker_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        validation_alias=_env("INTERLOCK_WORKER_METRICS_PORT"),
        description="Port on which `interlock worker` serves its own /metrics, on 0.0.0.0 (0: off).",
    )
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP endpoint for traces, e.g. http://otel-collector:4318 (unset: no tracing).",
    )
    otel_service_name: str = Field(
        "interlock",
        min_length=1,
        validation_alias=_env("OTEL_SERVICE_NAME"),
        description="service.name on the traces.",
    )
    log_level: str = Field(
        "INFO",
        validation_alias=_env("INTERLOCK_LOG_LEVEL"),
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    )

    @field_validator("temporal_address")
    @classmethod
    def _address(cls, value: str) -> str:
        match = _HOST_PORT.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not host:port (e.g. temporal:7233)")
        if not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"port {match.group(2)} is out of range")
        return value.strip()

    @field_validator("temporal_tls_cert", "temporal_tls_key", "temporal_tls_ca", "policy_file")
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        return _existing_file(value)

    @field_validator("playbooks_dir")
    @classmethod
    def _playbooks(cls, value: Path) -> Path:
        if not (value.expanduser() / "project").is_dir():
            raise ValueError(f"{value} has no project/ folder (not an ansible-runner private_data_dir)")
        return value.expanduser()

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError("not a database URL (e.g. postgresql+psycopg://user@host:5432/db)") from None
        if url.get_backend_name() not in ("postgresql", "sqlite"):
            raise ValueError(f"unsupported database {url.get_backend_name()!r} (use postgresql or sqlite)")
        return value

    @field_validator("audit_anchor")
    @classmethod
    def _anchor(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        text = value.get_secret_value()
        if "://" in text and not text.startswith(("postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must be a folder or a postgresql:// URL")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. http://otel-collector:4318)")
        return value.rstrip("/")

    @field_validator("service_manager")
    @classmethod
    def _manager(cls, value: str) -> str:
        if value not in ("lab", "systemd"):
            raise ValueError("must be 'lab' or 'systemd'")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together")
        return self

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lab_dir(self) -> Path:
        return (self.lab_root or self.home_dir / "lab").expanduser().resolve()

    @property
    def claims_namespace(self) -> str:
        return self.dedup_namespace or f"{self.temporal_namespace}-dedup"

    @property
    def effective_policy_file(self) -> Path | None:
        """The policy in force: INTERLOCK_POLICY, else the state folder's copy, else the default."""
        if self.policy_file is not None:
            return self.policy_file.expanduser().resolve()
        local = self.home_dir / "policy.yaml"
        return local if local.exists() else None

    @property
    def keys_dir(self) -> Path:
        return self.home_dir / "keys"

    @property
    def audit_anchor_spec(self) -> str:
        """Where checkpoints are anchored: INTERLOCK_AUDIT_ANCHOR, else <state folder>/audit-anchor."""
        if self.audit_anchor is not None and self.audit_anchor.get_secret_value():
            return self.audit_anchor.get_secret_value()
        return str(self.home_dir / "audit-anchor")

    @property
    def audit_signing_key_file(self) -> Path:
        if self.audit_signing_key is not None:
            return self.audit_signing_key.expanduser().resolve()
        return self.keys_dir / "audit-signing.key"

    @property
    def artifacts_dir(self) -> Path:
        return self.home_dir / "artifacts"


def env_name(model: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from."""
    info = model.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    prefix = model.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def describe_errors(model: type[BaseSettings], exc: ValidationError) -> str:
    """One line: each wrong variable's name and the reason (never the value of a secret)."""
    by_alias = {env_name(model, f).lower(): env_name(model, f) for f in model.model_fields}
    problems = []
    for error in exc.errors():
        loc = str(error["loc"][0]) if error["loc"] else ""
        name = by_alias.get(loc.lower()) or (env_name(model, loc) if loc in model.model_fields else "")
        reason = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {reason}" if name else reason)
    return "; ".join(problems)


def load(model: type[Any] = Settings, **overrides: Any) -> Any:
    """Read a settings model from the environment, or raise SettingsError naming the variable."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid setting: {describe_errors(model, exc)}") from None


def load_settings(**overrides: Any) -> Settings:
    return load(Settings, **overrides)

"""Every knob of Interlock, read from the environment (one settings model, one place)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    temporal_address: str = Field("localhost:7233", validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field("default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    temporal_tls_cert: Path | None = Field(None, validation_alias=_env("TEMPORAL_TLS_CERT"))
    temporal_tls_key: Path | None = Field(None, validation_alias=_env("TEMPORAL_TLS_KEY"))
    temporal_api_key: SecretStr | None = Field(None, validation_alias=_env("TEMPORAL_API_KEY"))
    task_queue: str = Field("interlock", validation_alias=_env("INTERLOCK_TASK_QUEUE"))

    home: Path = Field(Path(".interlock"), validation_alias=_env("INTERLOCK_HOME"))
    policy_file: Path | None = Field(None, validation_alias=_env("INTERLOCK_POLICY"))
    playbooks_dir: Path = Field(
        REPO_ROOT / "playbooks", validation_alias=_env("INTERLOCK_PLAYBOOKS")
    )
    lab_root: Path | None = Field(None, validation_alias=_env("INTERLOCK_LAB_ROOT"))
    service_manager: str = Field("lab", validation_alias=_env("INTERLOCK_SERVICE_MANAGER"))
    database_url: SecretStr | None = Field(None, validation_alias=_env("INTERLOCK_DATABASE_URL"))

    playbook_timeout_seconds: int = Field(
        600, gt=0, validation_alias=_env("INTERLOCK_PLAYBOOK_TIMEOUT")
    )
    playbook_idle_timeout_seconds: int = Field(
        120, gt=0, validation_alias=_env("INTERLOCK_PLAYBOOK_IDLE_TIMEOUT")
    )
    max_concurrent_playbooks: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        gt=0,
        validation_alias=_env("INTERLOCK_MAX_CONCURRENT_PLAYBOOKS"),
    )
    # `interlock up` serves the governance metrics at http://127.0.0.1:PORT/metrics; 0 turns it off.
    metrics_port: int = Field(9464, ge=0, le=65535, validation_alias=_env("INTERLOCK_METRICS_PORT"))
    otlp_endpoint: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    log_level: str = Field("INFO", validation_alias=_env("INTERLOCK_LOG_LEVEL"))

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
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lab_dir(self) -> Path:
        return (self.lab_root or self.home_dir / "lab").expanduser().resolve()

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
    def artifacts_dir(self) -> Path:
        return self.home_dir / "artifacts"

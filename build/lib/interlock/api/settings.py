"""Settings of the HTTP intake, read from `INTERLOCK_API_*` environment variables."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|seconds|m|min|minute|minutes|h|hour|hours)\s*$")
_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    """`count` requests per `period_seconds`, refilled continuously (a token bucket)."""

    count: int
    period_seconds: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """'60/minute', '2/second', '500/hour', '10/30s'."""
        match = _RATE.match(text.lower())
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"not a rate: {text!r} (use e.g. 60/minute, 2/second, 500/hour)")
        multiple = int(match.group(2) or 1)
        if multiple < 1:
            raise ValueError(f"not a rate: {text!r}")
        return cls(int(match.group(1)), multiple * _PERIODS[match.group(3)[0]])


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTERLOCK_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body: int = Field(65536, gt=0, description="Largest accepted request body, in bytes.")
    rate: str = Field("60/minute", description="Proposals each recommender may submit.")
    auth_failures: str = Field(
        "10/minute",
        description="Failed authentications a client address may make before it gets 429s.",
    )

    @field_validator("rate", "auth_failures")
    @classmethod
    def _rate(cls, value: str) -> str:
        Rate.parse(value)
        return value

    @property
    def parsed_rate(self) -> Rate:
        return Rate.parse(self.rate)

    @property
    def parsed_auth_failures(self) -> Rate:
        return Rate.parse(self.auth_failures)

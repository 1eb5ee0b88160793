"""Durations as a policy writes them ('90s', '30m', '24h', '7d', or seconds)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Built once: a TypeAdapter costs ~30 µs to build, and every workflow task decoding a policy
# snapshot from history parses a dozen durations.
_TIMEDELTA = TypeAdapter(timedelta)


def parse_duration(value: Any) -> timedelta:
    """'90s', '30m', '24h', '7d' or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    elif isinstance(value, str) and value.lstrip("-").startswith("P"):
        # ISO 8601, as pydantic serialises a timedelta (policy snapshots in workflow history).
        seconds = _TIMEDELTA.validate_python(value).total_seconds()
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 24h, 7d)")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

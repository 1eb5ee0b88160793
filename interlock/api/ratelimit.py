"""A token bucket per recommender, so one noisy recommender cannot flood the approvers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from interlock.api.settings import Rate


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate.count` requests per `rate.period_seconds`, with bursts up to `rate.count`."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(rate.count)
        self.per_second = rate.count / rate.period_seconds
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.per_second

    @staticmethod
    def retry_after_header(wait: float) -> str:
        # Retry-After is whole seconds; rounding down would invite an immediate second refusal.
        return str(max(1, math.ceil(wait)))

"""Rate limits of the intake: a token bucket per recommender, so one noisy recommender cannot
flood the approvers, and a failed-authentication window per client address, so tokens cannot
be guessed at speed."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
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


class FailureWindow:
    """At most `rate.count` failures per client in any `rate.period_seconds`; then refused until
    the oldest of them leaves the window. Only failures count: a success never uses it up."""

    # Addresses remembered at most; the oldest is forgotten first, so a storm from many
    # addresses costs bounded memory (it can only make a forgotten address start afresh).
    MAX_CLIENTS = 10_000

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic):
        self.limit = rate.count
        self.window = rate.period_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def wait(self, key: str) -> float:
        """0.0 when `key` may try again, else the seconds until it may."""
        now = self._clock()
        failures = self._recent(key, now)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window - now

    def fail(self, key: str) -> None:
        now = self._clock()
        failures = self._recent(key, now)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self.limit)
            while len(self._failures) > self.MAX_CLIENTS:
                self._failures.popitem(last=False)
        failures.append(now)

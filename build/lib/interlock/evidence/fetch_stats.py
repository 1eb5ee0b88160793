"""How often this process asked each evidence source, how often it got no usable answer, and
how long the asking took: plain counters and a histogram, rendered by the metrics exporter.

Per process on purpose: each worker exports its own, Prometheus labels each scrape with its
`instance`, and `sum without (instance)` adds the workers up (nothing is counted twice).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Seconds; a source answers in milliseconds, a cluster with a dead member after its timeout.
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class SourceFetches:
    """One source's tallies; `buckets[i]` counts the fetches that took <= FETCH_BUCKETS[i]."""

    fetches: int = 0
    failures: int = 0
    seconds_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(FETCH_BUCKETS))


class FetchStats:
    """Thread-safe: activities run on the worker's threads and event loop alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, SourceFetches] = {}

    def record(self, source: str, seconds: float, failed: bool) -> None:
        with self._lock:
            tally = self._sources.setdefault(source, SourceFetches())
            tally.fetches += 1
            tally.failures += int(failed)
            tally.seconds_sum += seconds
            for i, bound in enumerate(FETCH_BUCKETS):
                if seconds <= bound:
                    tally.buckets[i] += 1

    def snapshot(self) -> dict[str, SourceFetches]:
        with self._lock:
            return {
                name: SourceFetches(t.fetches, t.failures, t.seconds_sum, list(t.buckets))
                for name, t in sorted(self._sources.items())
            }


# The process's tallies: confirm() records into it, the exporter reads it.
FETCH_STATS = FetchStats()

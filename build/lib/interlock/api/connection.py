"""The intake's Temporal client: connected on first use, and again after an outage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from interlock.settings import Settings
from interlock.temporal import connect

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Awaitable[Client]]


class TemporalConnection:
    """A `ClientFactory` that connects lazily, so the API can start before Temporal does."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                # Raises TemporalUnavailable; nothing is cached, so the next request retries.
                self._client = await connect(self.settings)
                log.info("intake connected to Temporal at %s", self.settings.temporal_address)
            return self._client

    def reset(self) -> None:
        """Forget the client after an unavailable error: the next request connects afresh."""
        if self._client is not None:
            log.warning("dropping the Temporal client after a connection failure")
        self._client = None

    @property
    def connected(self) -> bool:
        return self._client is not None

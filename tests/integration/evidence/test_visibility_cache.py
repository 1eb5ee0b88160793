"""Checks moments apart share one visibility answer; failures and stale answers are not reused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from interlock.activities.records import FACTS_MAX_AGE_SECONDS, VisibilityCache, _window_start


async def test_concurrent_asks_of_one_query_share_one_answer() -> None:
    cache = VisibilityCache(max_age=5)
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    answers = await asyncio.gather(*(cache.get("q", fetch) for _ in range(20)))
    assert answers == [1] * 20 and calls == 1
    assert await cache.get("other", fetch) == 2  # another query asks the server


async def test_an_answer_older_than_max_age_is_asked_again() -> None:
    cache = VisibilityCache(max_age=0.1)
    values = iter([1, 2])

    async def fetch() -> int:
        return next(values)

    assert await cache.get("q", fetch) == 1
    assert await cache.get("q", fetch) == 1
    await asyncio.sleep(0.15)
    assert await cache.get("q", fetch) == 2


async def test_a_failure_is_not_kept() -> None:
    cache = VisibilityCache(max_age=60)
    attempts = 0

    async def fetch() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("server unavailable")
        return 7

    with pytest.raises(RuntimeError, match="unavailable"):
        await cache.get("q", fetch)
    assert await cache.get("q", fetch) == 7


async def test_one_cancelled_check_does_not_cancel_the_answer_others_wait_for() -> None:
    cache = VisibilityCache(max_age=5)
    release = asyncio.Event()

    async def fetch() -> str:
        await release.wait()
        return "answer"

    first = asyncio.create_task(cache.get("q", fetch))
    second = asyncio.create_task(cache.get("q", fetch))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == "answer"


def test_window_start_is_rounded_down_so_nearby_checks_ask_the_same_query() -> None:
    now = datetime(2026, 11, 26, 12, 0, 3, tzinfo=UTC)
    same = {_window_start(now + timedelta(seconds=s), timedelta(hours=1)) for s in range(-3, 2)}
    assert same == {"2026-11-26T11:00:00Z"}
    assert _window_start(now + timedelta(seconds=FACTS_MAX_AGE_SECONDS), timedelta(hours=1)) == (
        "2026-11-26T11:00:05Z"
    )

"""`changes` evidence: a deploy confirmed against Interlock's own execution records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.evidence.support import claim

NOW = datetime.now(UTC)


class Records:
    """A stand-in for Interlock's execution records, which the lead wires in."""

    def __init__(self, *changes: dict[str, Any]) -> None:
        self.changes = list(changes)
        self.asked: list[str] = []

    def __call__(self, service: str) -> list[dict[str, Any]]:
        self.asked.append(service)
        return self.changes


def deploy(release: str, status: str = "completed", minutes_ago: float = 5) -> dict[str, Any]:
    return {
        "release": release,
        "status": status,
        "finished_at": NOW - timedelta(minutes=minutes_ago),
        "proposal_id": "prop-1",
    }


async def test_a_recent_completed_deploy_is_confirmed(http: httpx.AsyncClient) -> None:
    source = Records(deploy("v1", minutes_ago=90), deploy("v2"))
    result = await claim(http, "changes", "", "deploy:checkout:v2", recent_changes=source, now=NOW)
    assert result.fetched and result.supports, result.reason
    assert result.source_time == NOW - timedelta(minutes=5)
    assert result.reason.startswith("release v2 was deployed to checkout-api at ")
    # Asked by the canonical name, whatever alias the ref used.
    assert source.asked == ["checkout-api"]
    assert result.observed["changes"][0]["proposal_id"] == "prop-1"


async def test_timestamps_may_be_rfc3339_text(http: httpx.AsyncClient) -> None:
    at = (NOW - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    source = Records({"release": "v2", "status": "COMPLETED", "finished_at": at})
    result = await claim(http, "changes", "", "deploy:checkout-api:v2", recent_changes=source)
    assert result.supports, result.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ([deploy("v2", minutes_ago=45)], "was last deployed to checkout-api at"),
        ([deploy("v2", status="failed")], "no completed deploy of release v2 to checkout-api"),
        ([deploy("v1")], "no deploy of release v2 to checkout-api on record"),
        ([], "no deploy of release v2 to checkout-api on record"),
        ([{"release": "v2", "status": "completed"}], "has no finish time"),
    ],
)
async def test_deploys_that_do_not_support_the_claim(
    http: httpx.AsyncClient, changes: list[dict[str, Any]], reason: str
) -> None:
    result = await claim(
        http,
        "changes",
        "",
        "deploy:checkout-api:v2",
        recent_changes=Records(*changes),
        max_age=timedelta(minutes=30),
        now=NOW,
    )
    assert result.fetched and not result.supports
    assert reason in result.reason


async def test_an_async_record_source_works(http: httpx.AsyncClient) -> None:
    async def recent_changes(service: str) -> list[dict[str, Any]]:
        return [deploy("v2")]

    result = await claim(
        http, "changes", "", "deploy:checkout-api:v2", recent_changes=recent_changes, now=NOW
    )
    assert result.supports, result.reason


async def test_without_records_nothing_is_confirmed(http: httpx.AsyncClient) -> None:
    result = await claim(http, "changes", "", "deploy:checkout-api:v2")
    assert not result.fetched and not result.supports
    assert result.reason == "no change records are wired to this source"


async def test_a_failing_record_source_is_retried_then_refused(http: httpx.AsyncClient) -> None:
    calls = 0

    def recent_changes(service: str) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        raise OSError("database is locked")

    result = await claim(
        http, "changes", "", "deploy:checkout-api:v2", recent_changes=recent_changes, retries=2
    )
    assert not result.fetched and not result.supports
    assert calls == 2
    assert result.reason == "source unreachable after 2 attempts: OSError: database is locked"


async def test_a_deploy_of_another_service_is_refused(http: httpx.AsyncClient) -> None:
    source = Records(deploy("v2"))
    result = await claim(http, "changes", "", "deploy:inventory:v2", recent_changes=source)
    assert not result.fetched and not result.supports
    assert result.reason == "the ref is about inventory-api, not the target checkout-api"
    assert source.asked == []

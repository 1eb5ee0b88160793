"""Each source kind against a real running lab: its monitor is the Alertmanager, the
Prometheus and the health endpoint Interlock asks, about checks the policy defines."""

from __future__ import annotations

import httpx
import pytest

from interlock.lab import Lab
from tests.integration.evidence.support import LateServer, claim, fixed_json_handler, free_port, lab_source


async def test_a_degraded_service_is_confirmed_by_every_kind(
    http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str
) -> None:
    healthy_lab.degrade("checkout-api")

    health = await claim(http, "http-health", monitor_url, "unhealthy")
    assert health.fetched and health.supports, health.reason
    assert health.reason.startswith("checkout-api fails its health check (HTTP 503")
    assert health.observed["status_code"] == 503
    assert health.observed["body"]["status"] == "failing"
    assert health.source_time is not None and health.attempts == 1

    alert = await claim(http, "alertmanager", monitor_url, "high_error_rate")
    assert alert.fetched and alert.supports, alert.reason
    assert alert.reason.startswith("alert HighErrorRate is active for checkout-api since ")
    assert alert.source_time is not None
    assert [a["labels"]["service"] for a in alert.observed["alerts"]] == ["checkout-api"]

    query = await claim(http, "prometheus", monitor_url, "high_error_ratio")
    assert query.fetched and query.supports, query.reason
    assert query.reason == 'error_ratio{service="checkout-api"} is 0.34 for checkout-api, > 0.05'
    assert query.observed["samples"][0]["value"] == 0.34
    assert query.observed["comparison"] == "> 0.05"


async def test_a_healthy_lab_confirms_nothing(http: httpx.AsyncClient, monitor_url: str) -> None:
    health = await claim(http, "http-health", monitor_url, "unhealthy")
    assert health.fetched and not health.supports
    assert health.reason == "checkout-api is healthy (HTTP 200, status 'ok')"

    alert = await claim(http, "alertmanager", monitor_url, "high_error_rate")
    assert alert.fetched and not alert.supports
    assert alert.reason == "no active alert HighErrorRate for checkout-api"
    assert alert.observed["alerts"] == []

    query = await claim(http, "prometheus", monitor_url, "high_error_ratio")
    assert query.fetched and not query.supports
    assert query.reason.endswith("is 0 for checkout-api, not > 0.05")


@pytest.mark.parametrize(
    ("kind", "ref"),
    [
        ("prometheus", 'error_ratio{service="checkout-api"} >= 0'),
        ("prometheus", "up > 0.5"),
        ("alertmanager", 'HighErrorRate{service="checkout-api"}'),
        ("http-health", "checkout-api/health"),
    ],
)
async def test_a_free_form_ref_is_refused_before_anything_is_asked(
    http: httpx.AsyncClient, monitor_url: str, kind: str, ref: str
) -> None:
    # A tautology such as `error_ratio >= 0` holds on a healthy service: only the policy's
    # checks, with the policy's thresholds, may be cited.
    result = await claim(http, kind, monitor_url, ref)
    assert not result.fetched and not result.supports
    assert result.reason.startswith(f"{ref!r} is not a check of ")
    assert "free-form expressions are refused" in result.reason


async def test_the_target_decides_which_series_count(
    http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str
) -> None:
    healthy_lab.degrade("inventory-api")
    alert = await claim(http, "alertmanager", monitor_url, "high_error_rate")
    assert alert.fetched and not alert.supports
    assert alert.reason == "no active alert HighErrorRate for checkout-api (active for inventory-api)"

    query = await claim(http, "prometheus", monitor_url, "high_error_ratio")
    assert query.fetched and not query.supports
    assert query.observed["query"] == 'error_ratio{service="checkout-api"}'

    inventory = await claim(http, "alertmanager", monitor_url, "high_error_rate", target="inventory")
    assert inventory.supports, inventory.reason


async def test_aliases_name_the_canonical_service(
    http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str
) -> None:
    healthy_lab.degrade("checkout-api")
    for kind, ref in [
        ("alertmanager", "high_error_rate"),
        ("prometheus", "high_error_ratio"),
        ("http-health", "unhealthy"),
    ]:
        result = await claim(http, kind, monitor_url, ref, target="Checkout")
        assert result.fetched and result.supports, (ref, result.reason)
    health = await claim(http, "http-health", monitor_url, "unhealthy", target="Checkout")
    assert health.observed["url"] == f"{monitor_url}/health/checkout-api"


async def test_alert_labels_are_normalised_and_the_service_label_is_the_policys(
    http: httpx.AsyncClient,
) -> None:
    # A test double for what the lab cannot show: an Alertmanager that labels services by
    # alias under `app`, and still lists alerts that already ended.
    def alert(service: str, ends: str = "2999-01-01T00:00:00Z") -> dict:
        return {
            "labels": {"alertname": "HighErrorRate", "app": service},
            "startsAt": "2020-01-01T10:02:00.123456789Z",
            "endsAt": ends,
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        }

    alerts = [alert("checkout", ends="2020-01-01T11:00:00Z")]
    # The handler serialises `alerts` on every request, so the test edits what it serves.
    server = LateServer(free_port(), fixed_json_handler({"/api/v2/alerts": (200, alerts)}))
    server.serve_now()
    try:
        base = f"http://127.0.0.1:{server.port}"
        spec = lab_source("alertmanager", base, service_label="app")
        stale = await claim(http, "alertmanager", base, "high_error_rate", spec=spec)
        assert stale.fetched and not stale.supports, stale.reason
        assert stale.reason == "no active alert HighErrorRate for checkout-api"

        alerts.append(alert("Checkout-Prod"))
        confirmed = await claim(http, "alertmanager", base, "high_error_rate", spec=spec)
        assert confirmed.supports, confirmed.reason
        assert confirmed.reason == (
            "alert HighErrorRate is active for checkout-api since 2020-01-01 10:02:00 UTC"
        )
        # With the default label (`service`) the same alerts name no service.
        unlabelled = await claim(http, "alertmanager", base, "high_error_rate")
        assert not unlabelled.supports
        assert unlabelled.reason.endswith("(active for <no service label>)")
    finally:
        server.close()


async def test_an_unknown_target_is_refused(http: httpx.AsyncClient, monitor_url: str) -> None:
    result = await claim(http, "alertmanager", monitor_url, "high_error_rate", target="chekout")
    assert result.reason == "the target 'chekout' is not a catalogued service"
    assert not result.supports
    change = await claim(http, "changes", "", "deploy:chekout:v1")
    assert change.reason == "the ref names 'chekout', which is not a catalogued service"


@pytest.mark.parametrize(
    ("query", "threshold", "supports"),
    [
        ('error_ratio{service="$service"}', {"below": 0.05}, False),
        ('error_ratio{service="$service"}', {"above": 0.5}, False),
        ('error_ratio{service="$service"}', {"above": 0.3}, True),
        ('error_ratio{service="$service"}', {"below": 0.35}, True),
        ('up{service="$service"}', {"below": 1}, False),
        ('up{service="$service"}', {"above": 0}, True),
    ],
)
async def test_the_policys_threshold_decides(
    http: httpx.AsyncClient,
    healthy_lab: Lab,
    monitor_url: str,
    query: str,
    threshold: dict[str, float],
    supports: bool,
) -> None:
    healthy_lab.degrade("checkout-api")
    spec = lab_source("prometheus", monitor_url, checks={"c": {"query": query, **threshold}})
    result = await claim(http, "prometheus", monitor_url, "c", spec=spec)
    assert result.fetched and result.supports is supports, result.reason
    if not supports:
        assert ", not " in result.reason


async def test_a_query_the_source_refuses_is_not_evidence(http: httpx.AsyncClient, monitor_url: str) -> None:
    checks = {"bad": {"query": 'rate(error_ratio{service="$service"}[5m])', "above": 0.1}}
    spec = lab_source("prometheus", monitor_url, checks=checks)
    result = await claim(http, "prometheus", monitor_url, "bad", spec=spec)
    # Not fetched: a refusal says nothing about the target, so it can never mean "cleared".
    assert not result.fetched and not result.supports
    assert result.reason.startswith("prometheus refused the query 'rate(error_ratio")
    assert "unsupported query" in result.reason  # the source's own error text
    assert result.attempts == 1  # a 400 is not an outage: not retried


async def test_an_unknown_health_endpoint_is_not_a_failing_one(
    http: httpx.AsyncClient, monitor_url: str
) -> None:
    # storefront is catalogued but the lab does not run it: the monitor answers 404.
    result = await claim(http, "http-health", monitor_url, "unhealthy", target="storefront")
    assert not result.fetched and not result.supports
    assert "answered HTTP 404, which says nothing about storefront's health" in result.reason


async def test_a_malformed_changes_ref_is_refused_naming_the_grammar(
    http: httpx.AsyncClient,
) -> None:
    result = await claim(http, "changes", "", "deploy:checkout-api")
    assert not result.fetched and not result.supports
    assert result.reason.startswith("cannot parse ref 'deploy:checkout-api' for a changes source")

"""Each source kind against a real running lab: its monitor is the Alertmanager, the
Prometheus and the health endpoint Interlock asks."""

from __future__ import annotations

import httpx
import pytest

from interlock.evidence import GRAMMAR
from interlock.lab import Lab
from tests.evidence.support import LateServer, claim, fixed_json_handler, free_port

HEALTH = "checkout-api/health"
ALERT = 'HighErrorRate{service="checkout-api"}'
QUERY = 'error_ratio{service="checkout-api"} > 0.05'


async def test_a_degraded_service_is_confirmed_by_every_kind(
    http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str
) -> None:
    healthy_lab.degrade("checkout-api")

    health = await claim(http, "http-health", monitor_url, HEALTH)
    assert health.fetched and health.supports, health.reason
    assert health.reason.startswith("checkout-api fails its health check (HTTP 503")
    assert health.observed["status_code"] == 503
    assert health.observed["body"]["status"] == "failing"
    assert health.source_time is not None and health.attempts == 1

    for ref in (ALERT, "alertname=HighErrorRate,service=checkout-api"):
        alert = await claim(http, "alertmanager", monitor_url, ref)
        assert alert.fetched and alert.supports, alert.reason
        assert alert.reason.startswith("alert HighErrorRate is active for checkout-api since ")
        assert alert.source_time is not None
        assert [a["labels"]["service"] for a in alert.observed["alerts"]] == ["checkout-api"]

    query = await claim(http, "prometheus", monitor_url, QUERY)
    assert query.fetched and query.supports, query.reason
    assert query.reason == f"{QUERY.split(' >')[0]} is 0.34 for checkout-api, > 0.05 as claimed"
    assert query.observed["samples"][0]["value"] == 0.34


async def test_a_healthy_lab_confirms_nothing(http: httpx.AsyncClient, monitor_url: str) -> None:
    health = await claim(http, "http-health", monitor_url, HEALTH)
    assert health.fetched and not health.supports
    assert health.reason == "checkout-api is healthy (HTTP 200, status 'ok')"

    alert = await claim(http, "alertmanager", monitor_url, ALERT)
    assert alert.fetched and not alert.supports
    assert alert.reason == "no active alert HighErrorRate for checkout-api"
    assert alert.observed["alerts"] == []

    query = await claim(http, "prometheus", monitor_url, QUERY)
    assert query.fetched and not query.supports
    assert query.reason.endswith("is 0 for checkout-api, not > 0.05")


async def test_evidence_about_another_service_is_refused(
    http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str
) -> None:
    healthy_lab.degrade("inventory-api")

    alert = await claim(http, "alertmanager", monitor_url, "HighErrorRate")
    assert alert.fetched and not alert.supports
    assert alert.reason == ("no active alert HighErrorRate for checkout-api (active for inventory-api)")

    # The query asks about inventory-api; its answer is not about the target.
    other = 'error_ratio{service="inventory-api"} > 0.05'
    query = await claim(http, "prometheus", monitor_url, other)
    assert query.fetched and not query.supports
    assert "no series for checkout-api (series for inventory-api)" in query.reason

    # A path that reaches another service's health check is caught by the answer's `service`.
    health = await claim(http, "http-health", monitor_url, "/health/inventory-api")
    assert health.fetched and not health.supports
    assert health.reason == "the health endpoint answered for 'inventory-api', not checkout-api"

    # A ref naming another service is refused before anything is asked.
    for kind, ref in [
        ("alertmanager", 'HighErrorRate{service="inventory-api"}'),
        ("http-health", "inventory/health"),
    ]:
        refused = await claim(http, kind, monitor_url, ref)
        assert not refused.fetched and not refused.supports
        assert refused.reason == "the ref is about inventory-api, not the target checkout-api"


async def test_aliases_are_normalised(http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str) -> None:
    healthy_lab.degrade("checkout-api")
    for kind, ref in [
        ("alertmanager", 'HighErrorRate{service="Checkout"}'),
        ("alertmanager", "alertname=HighErrorRate,service=CHECKOUT-PROD"),
        ("http-health", "Checkout/health"),
        # No service matcher: every series comes back and only the target's counts.
        ("prometheus", "error_ratio > 0.05"),
    ]:
        result = await claim(http, kind, monitor_url, ref, target="Checkout")
        assert result.fetched and result.supports, (ref, result.reason)
    health = await claim(http, "http-health", monitor_url, "Checkout/health")
    assert health.observed["url"] == f"{monitor_url}/health/checkout-api"


async def test_alert_labels_are_normalised_too(http: httpx.AsyncClient) -> None:
    # A test double for what the lab cannot show: an Alertmanager that labels services by
    # alias and still lists alerts that are suppressed or already ended.
    def alert(service: str, state: str = "active", ends: str = "2999-01-01T00:00:00Z") -> dict:
        return {
            "labels": {"alertname": "HighErrorRate", "service": service},
            "startsAt": "2020-01-01T10:02:00.123456789Z",
            "endsAt": ends,
            "status": {"state": state, "silencedBy": [], "inhibitedBy": []},
        }

    alerts = [alert("checkout", "suppressed"), alert("checkout", ends="2020-01-01T11:00:00Z")]
    # The handler serialises `alerts` on every request, so the test edits what it serves.
    server = LateServer(free_port(), fixed_json_handler({"/api/v2/alerts": (200, alerts)}))
    server.serve_now()
    try:
        base = f"http://127.0.0.1:{server.port}"
        stale = await claim(http, "alertmanager", base, "HighErrorRate")
        assert stale.fetched and not stale.supports, stale.reason
        assert stale.reason == "no active alert HighErrorRate for checkout-api"

        alerts.append(alert("Checkout-Prod"))
        confirmed = await claim(http, "alertmanager", base, 'HighErrorRate{service="checkout"}')
        assert confirmed.supports, confirmed.reason
        assert confirmed.reason == (
            "alert HighErrorRate is active for checkout-api since 2020-01-01 10:02:00 UTC"
        )

        alerts[:] = [alert("checkout-web")]
        unknown = await claim(http, "alertmanager", base, "HighErrorRate")
        assert unknown.fetched and not unknown.supports
        assert unknown.reason == ("no active alert HighErrorRate for checkout-api (active for checkout-web)")
    finally:
        server.close()


async def test_unknown_aliases_are_refused(http: httpx.AsyncClient, monitor_url: str) -> None:
    for kind, ref in [
        ("alertmanager", 'HighErrorRate{service="chekout"}'),
        ("http-health", "chekout/health"),
        ("changes", "deploy:chekout:v1"),
    ]:
        result = await claim(http, kind, monitor_url, ref)
        assert not result.fetched and not result.supports
        assert result.reason == "the ref names 'chekout', which is not a catalogued service"

    target = await claim(http, "alertmanager", monitor_url, "HighErrorRate", target="chekout")
    assert target.reason == "the target 'chekout' is not a catalogued service"
    assert not target.supports


@pytest.mark.parametrize(
    ("ref", "supports"),
    [
        ('error_ratio{service="checkout-api"} < 0.05', False),
        ('error_ratio{service="checkout-api"} > 0.5', False),
        ('error_ratio{service="checkout-api"} >= 0.34', True),
        ('error_ratio{service="checkout-api"} <= 0.34', True),
        ('error_ratio{service="checkout-api"} < 0.34', False),
        ('up{service="checkout-api"} >= 1', True),
        ('up{service="checkout-api"} < 1', False),
    ],
)
async def test_prometheus_value_must_be_on_the_claimed_side(
    http: httpx.AsyncClient, healthy_lab: Lab, monitor_url: str, ref: str, supports: bool
) -> None:
    healthy_lab.degrade("checkout-api")
    result = await claim(http, "prometheus", monitor_url, ref)
    assert result.fetched and result.supports is supports, result.reason
    if not supports:
        assert ", not " in result.reason


async def test_a_query_the_source_refuses_is_not_evidence(http: httpx.AsyncClient, monitor_url: str) -> None:
    result = await claim(http, "prometheus", monitor_url, "rate(error_ratio[5m]) > 0.1")
    assert result.fetched and not result.supports
    assert result.reason.startswith("prometheus refused the query 'rate(error_ratio[5m])'")
    assert result.attempts == 1  # a 400 is an answer, not an outage


async def test_an_unknown_health_endpoint_is_not_a_failing_one(
    http: httpx.AsyncClient, monitor_url: str
) -> None:
    # storefront is catalogued but the lab does not run it: the monitor answers 404.
    result = await claim(http, "http-health", monitor_url, "storefront/health", target="storefront")
    assert result.fetched and not result.supports
    assert "answered HTTP 404, which says nothing about storefront's health" in result.reason


@pytest.mark.parametrize(
    ("kind", "ref"),
    [
        ("http-health", "checkout api is failing"),
        ("alertmanager", 'HighErrorRate{service="checkout-api"'),
        ("prometheus", "error_ratio is high"),
        ("changes", "deploy:checkout-api"),
    ],
)
async def test_malformed_refs_are_refused_naming_the_grammar(
    http: httpx.AsyncClient, monitor_url: str, kind: str, ref: str
) -> None:
    result = await claim(http, kind, monitor_url, ref)
    assert not result.fetched and not result.supports
    assert result.reason.startswith(f"cannot parse ref {ref!r} for a {kind} source")
    assert result.reason.endswith(f"expected {GRAMMAR[kind]}")


async def test_an_unknown_kind_is_refused(http: httpx.AsyncClient, monitor_url: str) -> None:
    result = await claim(http, "splunk", monitor_url, "index=main error")
    assert not result.fetched and not result.supports
    assert result.reason.startswith("unknown source kind 'splunk'")

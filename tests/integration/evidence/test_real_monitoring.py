"""The connectors against a real Prometheus 2.42 and Alertmanager 0.25 scraping the lab:
firing, pending, silenced and inhibited alerts, a fix seen through the alert rule, clusters
with a member down, and the servers' own error text."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from interlock.lab import Lab
from interlock.sources import SourceSpec
from tests.integration.evidence.monitoring import Monitoring, wait_for
from tests.integration.evidence.support import claim, free_port

pytestmark = pytest.mark.timeout(180)


def prometheus(m: Monitoring, **changes: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "kind": "prometheus",
            "url": m.prometheus,
            "scrape_interval": "1s",
            "evaluation_interval": "1s",
            "checks": {
                "high_error_ratio": {"query": 'error_ratio{service="$service"}', "above": 0.05},
                "very_high_error_ratio": {"query": 'error_ratio{service="$service"}', "above": 0.5},
                "bad_query": {"query": 'error_ratio{service="$service"', "above": 0.05},
            },
            **changes,
        }
    )


def alertmanager(m: Monitoring, **changes: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {
            "kind": "alertmanager",
            "url": m.alertmanager,
            "checks": {
                "high_error_rate": {"alert": "HighErrorRate"},
                "slow_errors": {"alert": "SlowErrors"},
                "bad_matcher": {"alert": "HighErrorRate", "matchers": {"bad label": "x"}},
            },
            **changes,
        }
    )


def firing(m: Monitoring, lab: Lab, service: str = "checkout-api") -> None:
    lab.degrade(service)
    m.wait_alert("HighErrorRate", service, "active")


async def test_a_firing_alert_and_a_promql_check_confirm(
    http: httpx.AsyncClient, calm: Monitoring, monitored_lab: Lab
) -> None:
    firing(calm, monitored_lab)
    spec = alertmanager(calm)
    alert = await claim(http, "alertmanager", "", "high_error_rate", spec=spec)
    assert alert.fetched and alert.supports, alert.reason
    assert alert.reason.startswith("alert HighErrorRate is active for checkout-api since ")

    prom = prometheus(calm)
    query = await claim(http, "prometheus", "", "high_error_ratio", spec=prom)
    assert query.fetched and query.supports, query.reason
    assert query.reason == 'error_ratio{service="checkout-api"} is 0.34 for checkout-api, > 0.05'
    # The policy's threshold, not the recommender's, decides.
    higher = await claim(http, "prometheus", "", "very_high_error_ratio", spec=prom)
    assert higher.fetched and not higher.supports
    assert higher.reason.endswith("is 0.34 for checkout-api, not > 0.5")
    # A healthy service confirms nothing, whatever is firing elsewhere.
    other = await claim(http, "prometheus", "", "high_error_ratio", "inventory-api", spec=prom)
    assert other.fetched and not other.supports, other.reason
    calm_alert = await claim(http, "alertmanager", "", "high_error_rate", "inventory-api", spec=spec)
    assert not calm_alert.supports
    assert calm_alert.reason == ("no active alert HighErrorRate for inventory-api (active for checkout-api)")


async def test_a_silenced_alert_is_suppressed_and_its_rule_decides_after_a_change(
    http: httpx.AsyncClient, calm: Monitoring, monitored_lab: Lab
) -> None:
    firing(calm, monitored_lab)
    silence = calm.silence("checkout-api")
    try:
        calm.wait_alert("HighErrorRate", "checkout-api", "suppressed")
        spec = alertmanager(calm)
        found = await claim(http, "alertmanager", "", "high_error_rate", spec=spec)
        # Not "no active alert": a silenced alert neither confirms nor clears.
        assert not found.supports and not found.fetched and found.suppressed, found.reason
        assert found.suppressed_by == [f"silenced by {silence}"]
        assert found.reason == (
            f"alert HighErrorRate for checkout-api is suppressed (silenced by {silence}): "
            "a suppressed alert does not confirm the claim"
        )
        # After a change, without a rule source: it cannot tell, so it is never "cleared".
        after = await claim(http, "alertmanager", "", "high_error_rate", spec=spec, after_change=True)
        assert not after.fetched and not after.supports
        assert after.reason.endswith(": could not tell whether it cleared")

        # With its Prometheus rule: the failed fix (still degraded) shows the rule firing...
        rules = {"prom": prometheus(calm)}
        ruled = alertmanager(calm, rules_source="prom")
        still = await claim(
            http, "alertmanager", "", "high_error_rate", spec=ruled, sources=rules, after_change=True
        )
        assert still.fetched and still.supports, still.reason
        assert still.reason.endswith("its Prometheus rule is still firing for checkout-api")

        # ...and a real fix is seen to clear through the rule's resolve.
        monitored_lab.reset()

        async def cleared() -> bool:
            r = await claim(
                http, "alertmanager", "", "high_error_rate", spec=ruled, sources=rules, after_change=True
            )
            return r.fetched and not r.supports

        for _ in range(100):
            if await cleared():
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError("the rule never resolved after the fix")
        done = await claim(
            http, "alertmanager", "", "high_error_rate", spec=ruled, sources=rules, after_change=True
        )
        assert done.reason.endswith("its Prometheus rule no longer fires for checkout-api") or (
            done.reason == "no active alert HighErrorRate for checkout-api"
        ), done.reason
    finally:
        calm.expire(silence)


async def test_an_inhibited_alert_is_suppressed_naming_the_inhibiting_alert(
    http: httpx.AsyncClient, calm: Monitoring, monitored_lab: Lab
) -> None:
    firing(calm, monitored_lab)
    labels = {"alertname": "Maintenance", "service": "checkout-api"}
    calm.post_alert(labels)
    try:
        calm.wait_alert("HighErrorRate", "checkout-api", "suppressed")
        found = await claim(http, "alertmanager", "", "high_error_rate", spec=alertmanager(calm))
        assert found.suppressed and not found.supports and not found.fetched, found.reason
        [by] = found.suppressed_by
        assert by.startswith("inhibited by Maintenance{service=checkout-api} (fingerprint ")
        assert "no active alert" not in found.reason
    finally:
        calm.post_alert(labels, minutes=0)  # resolved now


async def test_a_pending_alert_confirms_nothing(
    http: httpx.AsyncClient, calm: Monitoring, monitored_lab: Lab
) -> None:
    firing(calm, monitored_lab)
    # SlowErrors has `for: 1h`: Prometheus holds it pending, Alertmanager never hears of it.
    wait_for(
        "SlowErrors pending",
        lambda: any(
            a["labels"]["alertname"] == "SlowErrors" and a["state"] == "pending"
            for a in httpx.get(f"{calm.prometheus}/api/v1/alerts").json()["data"]["alerts"]
        ),
    )
    found = await claim(http, "alertmanager", "", "slow_errors", spec=alertmanager(calm))
    assert found.fetched and not found.supports
    assert found.reason == "no active alert SlowErrors for checkout-api"


async def test_an_alertmanager_cluster_answers_while_one_member_is_down(
    http: httpx.AsyncClient, calm: Monitoring, monitored_lab: Lab
) -> None:
    firing(calm, monitored_lab)
    down = f"http://127.0.0.1:{free_port()}"
    spec = alertmanager(calm, url="", urls=[down, calm.alertmanager])
    found = await claim(http, "alertmanager", "", "high_error_rate", spec=spec, retries=2)
    assert found.fetched and found.supports, found.reason
    assert found.observed["url"].startswith(calm.alertmanager)
    assert found.attempts == 2  # the dead member once, then the live one

    both_down = alertmanager(calm, url="", urls=[down, f"http://127.0.0.1:{free_port()}"])
    gone = await claim(http, "alertmanager", "", "high_error_rate", spec=both_down, retries=1)
    assert not gone.fetched
    assert gone.reason.startswith("source unreachable after 2 attempts: ")
    assert f"{down}: connection refused" in gone.reason


async def test_the_servers_error_text_is_shown(http: httpx.AsyncClient, calm: Monitoring) -> None:
    am = await claim(http, "alertmanager", "", "bad_matcher", spec=alertmanager(calm))
    # A refusal is no answer: after a change it must not read as "cleared".
    assert not am.supports and not am.fetched
    assert am.reason.startswith("alertmanager did not list alerts (HTTP 400): ")
    assert len(am.reason) > len("alertmanager did not list alerts (HTTP 400): ") + 5
    prom = await claim(http, "prometheus", "", "bad_query", spec=prometheus(calm))
    assert not prom.supports and not prom.fetched
    assert "(HTTP 400): " in prom.reason and "parse error" in prom.reason

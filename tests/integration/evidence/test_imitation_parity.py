"""The lab's imitation (interlock/lab/monitor.py, what `interlock up` uses) and the real
Prometheus and Alertmanager, asked the same thing about the same lab, give the same verdicts:
firing, silenced, pending, resolved, and a PromQL check. Inhibition the imitation does not do
(docs/monitoring.md)."""

from __future__ import annotations

import dataclasses
import re

import httpx
import pytest

from interlock.evidence.confirmation import Confirmation
from interlock.lab import Lab
from tests.integration.evidence.monitoring import Monitoring
from tests.integration.evidence.support import claim
from tests.integration.evidence.test_real_monitoring import alertmanager, prometheus

pytestmark = pytest.mark.timeout(120)


def verdict(c: Confirmation) -> tuple[bool, bool, bool, str]:
    # Times and silence ids differ between the two servers; everything else must not.
    reason = re.sub(r" since \S+", " since T", c.reason)
    reason = re.sub(r"silenced by [0-9a-f-]{36}", "silenced by ID", reason)
    return (c.fetched, c.supports, c.suppressed, reason)


async def both(http: httpx.AsyncClient, real: Monitoring, lab_url: str, check: str) -> list[Confirmation]:
    kind = "alertmanager" if check in ("high_error_rate", "slow_errors") else "prometheus"
    make = alertmanager if kind == "alertmanager" else prometheus
    imitation = dataclasses.replace(real, alertmanager=lab_url, prometheus=lab_url)
    return [await claim(http, kind, "", check, spec=make(m)) for m in (real, imitation)]


async def test_the_imitation_gives_the_real_servers_verdicts(
    http: httpx.AsyncClient, calm: Monitoring, monitored_lab: Lab
) -> None:
    lab_url: str = monitored_lab.status()["monitor"]["url"]
    imitation = dataclasses.replace(calm, alertmanager=lab_url)

    # Resolved (nothing wrong): no active alert either way.
    real, fake = await both(http, calm, lab_url, "high_error_rate")
    none = "no active alert HighErrorRate for checkout-api"
    assert verdict(real) == verdict(fake) == (True, False, False, none)

    monitored_lab.degrade("checkout-api")
    calm.wait_alert("HighErrorRate", "checkout-api", "active")
    imitation.wait_alert("HighErrorRate", "checkout-api", "active")
    # Firing.
    real, fake = await both(http, calm, lab_url, "high_error_rate")
    assert verdict(real) == verdict(fake), (real.reason, fake.reason)
    assert real.supports
    # A PromQL check on the same value.
    real, fake = await both(http, calm, lab_url, "high_error_ratio")
    assert verdict(real) == verdict(fake), (real.reason, fake.reason)
    # Pending in Prometheus (`for: 1h`): Alertmanager never hears of it; the imitation has no such rule.
    real, fake = await both(http, calm, lab_url, "slow_errors")
    pending = "no active alert SlowErrors for checkout-api"
    assert verdict(real) == verdict(fake) == (True, False, False, pending)

    # Silenced through each one's own API.
    ids = [calm.silence("checkout-api"), imitation.silence("checkout-api")]
    try:
        calm.wait_alert("HighErrorRate", "checkout-api", "suppressed")
        assert imitation.alert_state("HighErrorRate", "checkout-api") == "suppressed"
        real, fake = await both(http, calm, lab_url, "high_error_rate")
        assert verdict(real) == verdict(fake), (real.reason, fake.reason)
        assert real.suppressed and real.suppressed_by == [f"silenced by {ids[0]}"]
        assert fake.suppressed_by == [f"silenced by {ids[1]}"]
    finally:
        calm.expire(ids[0])
        imitation.expire(ids[1])
    # Expired: active again in both.
    calm.wait_alert("HighErrorRate", "checkout-api", "active")
    assert imitation.alert_state("HighErrorRate", "checkout-api") == "active"
    monitored_lab.reset()

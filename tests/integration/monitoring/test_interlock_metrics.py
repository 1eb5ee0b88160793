"""Interlock's own metrics the Prometheus way: counters from the audit trail, histograms in
seconds, per-process evidence fetch series; `promtool check metrics` on what /metrics serves,
the shipped alert rules' `promtool test rules`, and the dashboard's queries run by a real
Prometheus."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from interlock.audit import open_store
from interlock.audit.exporter import CachedFigures, exposition, policy_expiry, serve_metrics
from interlock.audit.metrics import lifetime_figures
from interlock.evidence.fetch_stats import FetchStats
from interlock.settings import Settings
from tests.integration.audit.sample import T0, decision, event, final, lifecycle
from tests.integration.evidence.monitoring import Monitoring, binary
from tests.integration.evidence.support import free_port

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "interlock.json"

# A completes 120 s after submission (a person approved at 60 s); B waits for approval since
# its preview at 5 s; C is rejected by a person at 30 s; D approved by the policy at 2 s.
EVENTS = [
    *lifecycle("A"),
    event("B", "submitted", 0),
    event("B", "preview", 5),
    event("C", "submitted", 0),
    decision("C", 30, "reject"),
    final("C", 31, "rejected"),
    event("C", "audit_exception", 40, data={"problem": "missing"}),
    event("D", "submitted", 0),
    decision("D", 2, human=False),
    event("D", "escalated", 3),
    event("D", "security", 4, data={"ok": False}),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'audit.db'}")
    with open_store(s) as store:
        for e in EVENTS:
            store.append(e)
    return s


def samples(text: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_counters_and_histograms_come_from_the_audit_trail(settings: Settings) -> None:
    def one_hour(action: str | None, tier: str | None) -> timedelta | None:
        return timedelta(hours=1) if (action, tier) == ("restart_service", "low") else None

    with open_store(settings) as store:
        figures = lifetime_figures(store, one_hour, now=T0 + timedelta(minutes=10))
    assert figures["submitted"] == 4
    assert figures["finished"] == {"completed": 1, "rejected": 1}
    assert figures["decisions"] == {
        ("approve", "person"): 1,
        ("approve", "policy"): 1,
        ("reject", "person"): 1,
    }
    assert (figures["overrides"], figures["escalations"]) == (1, 1)
    assert figures["audit_exceptions"] == {"audit_exception": 1, "security": 1}
    # B waits since its preview at 5 s; an hour's limit leaves it 3600 - 600 + 5 s.
    assert figures["waiting"] == [
        {"action": "restart_service", "risk_tier": "low", "count": 1, "expires_in_seconds": 3005.0}
    ]

    text = exposition(CachedFigures(lambda: open_store(settings), expire_after=one_hour))
    got = samples(text)
    assert got['interlock_proposals_finished_total{status="completed"}'] == "1"
    assert got['interlock_proposals_finished_total{status="expired"}'] == "0"  # listed before it happens
    assert got['interlock_decisions_total{decision="approve",by="policy"}'] == "1"
    assert got["interlock_overrides_total"] == "1"
    assert got['interlock_audit_exceptions_total{kind="security"}'] == "1"
    # First response: C at 30 s and A at 60 s; decision adds D at 2 s; resolve: A at 120 s.
    assert got['interlock_time_to_first_response_seconds_bucket{le="30"}'] == "1"
    assert got['interlock_time_to_first_response_seconds_bucket{le="60"}'] == "2"
    assert got["interlock_time_to_first_response_seconds_sum"] == "90"
    assert got['interlock_time_to_decision_seconds_bucket{le="10"}'] == "1"
    assert got["interlock_time_to_decision_seconds_count"] == "3"
    assert got['interlock_time_to_resolve_seconds_bucket{le="60"}'] == "0"
    assert got['interlock_time_to_resolve_seconds_bucket{le="+Inf"}'] == "1"
    assert got['interlock_awaiting_approval{action="restart_service",risk_tier="low"}'] == "1"
    # The old names still answer (docs/monitoring.md lists them).
    assert got["interlock_backlog"] == "2"
    assert "interlock_mttr_seconds_count" in got
    # No ratio is precomputed among the new series: PromQL divides the rates.
    new = [n for n in got if n.endswith("_total") or "_bucket" in n]
    assert new and not [n for n in new if "ratio" in n]


def test_fetch_tallies_are_a_histogram_per_source() -> None:
    stats = FetchStats()
    stats.record("prom", 0.03, failed=False)
    stats.record("prom", 3.0, failed=True)
    stats.record("am", 0.2, failed=False)
    [am, prom] = stats.snapshot().items()
    assert am[0] == "am" and prom[0] == "prom"
    assert (prom[1].fetches, prom[1].failures) == (2, 1)
    assert prom[1].buckets[2] == 1 and prom[1].buckets[-1] == 2  # le=0.05 and le=30


async def test_metrics_endpoint_passes_promtool_check_metrics(settings: Settings) -> None:
    promtool = binary("promtool")
    port = free_port()
    server = asyncio.create_task(serve_metrics(settings, port))
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            for _ in range(100):
                try:
                    answer = await http.get(f"http://127.0.0.1:{port}/metrics")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        assert answer.status_code == 200
        body = answer.text
        assert "interlock_time_to_resolve_seconds_bucket" in body
        assert "interlock_evidence_fetch_seconds" in body
        # The built-in policy gives B's tier its limit, so the expiry clock is exported.
        assert "interlock_approval_expires_in_seconds{" in body
        done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def test_promtool_lint_catches_what_it_should() -> None:
    """The check above is not vacuous: promtool refuses a counter without `_total`."""
    promtool = binary("promtool")
    bad = "# HELP interlock_fetches Fetches.\n# TYPE interlock_fetches counter\ninterlock_fetches 1\n"
    done = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, text=True)
    assert done.returncode != 0 and "_total" in done.stdout + done.stderr


def test_the_alert_rules_pass_their_promtool_tests(tmp_path: Path) -> None:
    promtool = binary("promtool")
    for name in ("interlock-rules.yml", "interlock-rules.test.yml"):
        shutil.copy(RULES / name, tmp_path / name)
    done = subprocess.run(
        [promtool, "test", "rules", "interlock-rules.test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_dashboard_asks_only_for_series_the_exporter_serves(settings: Settings) -> None:
    text = exposition(CachedFigures(lambda: open_store(settings), expire_after=policy_expiry(settings)))
    served = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    # This process fetched nothing yet; the exporter renders these once it has.
    fetch = {
        "interlock_evidence_fetches_total",
        "interlock_evidence_fetch_failures_total",
        "interlock_evidence_fetch_seconds",
    }
    assert fetch <= served
    asked = {m for q in dashboard_queries() for m in re.findall(r"interlock_[a-z_]+", q)}
    asked = {re.sub(r"_bucket$", "", m) for m in asked}
    assert asked - served == set()


def test_a_real_prometheus_parses_every_dashboard_query(monitoring: Monitoring) -> None:
    for query in dashboard_queries():
        # Grafana fills $__rate_interval in; anything Prometheus accepts will do here.
        expr = query.replace("$__rate_interval", "1m")
        answer = httpx.get(f"{monitoring.prometheus}/api/v1/query", params={"query": expr}, timeout=5)
        assert answer.status_code == 200, f"{expr}: {answer.text}"

"""Real Prometheus and Alertmanager processes for the evidence tests (Debian's `prometheus`
and `prometheus-alertmanager`), run with their own config and data dir and 1 s intervals,
Prometheus scraping the lab monitor's /metrics."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.integration.evidence.support import free_port

T = TypeVar("T")

RULES = {
    "groups": [
        {
            "name": "lab",
            "interval": "1s",
            "rules": [
                {"alert": "HighErrorRate", "expr": "error_ratio > 0.05"},
                {"alert": "ServiceDown", "expr": "lab_service_up == 0"},
                # Never fires within a test: its `for` keeps it pending.
                {"alert": "SlowErrors", "expr": "error_ratio > 0.05", "for": "1h"},
            ],
        }
    ]
}
ALERTMANAGER_CONFIG = {
    "route": {
        "receiver": "blackhole",
        "group_wait": "0s",
        "group_interval": "1s",
        "repeat_interval": "1h",
    },
    "receivers": [{"name": "blackhole"}],
    # An alert posted as Maintenance{service=X} inhibits HighErrorRate{service=X}.
    "inhibit_rules": [
        {
            "source_matchers": ['alertname="Maintenance"'],
            "target_matchers": ['alertname="HighErrorRate"'],
            "equal": ["service"],
        }
    ],
}


def binary(*names: str) -> str:
    """The first of `names` on PATH. Missing: a failure on CI (which must have it), a skip
    with the reason elsewhere."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    why = (
        f"{' / '.join(names)} not installed (apt-get install -y --no-install-recommends "
        "prometheus prometheus-alertmanager; scripts/test does it where it can)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Monitoring:
    prometheus: str  # base URLs
    alertmanager: str
    root: Path

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.alertmanager}/api/v2/alerts", params=params, timeout=5)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    def alert_state(self, alertname: str, service: str) -> str | None:
        for a in self.alerts():
            labels = a["labels"]
            if labels.get("alertname") == alertname and labels.get("service") == service:
                state: str = a["status"]["state"]
                return state
        return None

    def wait_alert(self, alertname: str, service: str, state: str | None, timeout: float = 30) -> None:
        wait_for(
            f"{alertname} for {service} to be {state}",
            lambda: self.alert_state(alertname, service) == state,
            timeout,
        )

    def silence(self, service: str, alertname: str = "HighErrorRate") -> str:
        now = datetime.now(UTC)
        body = {
            "matchers": [
                {"name": "alertname", "value": alertname, "isRegex": False, "isEqual": True},
                {"name": "service", "value": service, "isRegex": False, "isEqual": True},
            ],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "interlock-tests",
            "comment": "muted while the fix is tried",
        }
        answer = httpx.post(f"{self.alertmanager}/api/v2/silences", json=body, timeout=5)
        answer.raise_for_status()
        silence_id: str = answer.json()["silenceID"]
        return silence_id

    def expire(self, silence_id: str) -> None:
        httpx.delete(f"{self.alertmanager}/api/v2/silence/{silence_id}", timeout=5)

    def post_alert(self, labels: dict[str, str], minutes: float = 60) -> None:
        """An alert sent straight to Alertmanager, as another Prometheus would."""
        now = datetime.now(UTC)
        body = [
            {
                "labels": labels,
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=minutes)).isoformat(),
            }
        ]
        httpx.post(f"{self.alertmanager}/api/v2/alerts", json=body, timeout=5).raise_for_status()


@contextmanager
def _process(args: list[str], log: Path, ready_url: str, **get: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` until the block ends, once `ready_url` answers 200 (`get`: httpx.get's
    arguments for it, such as auth and verify)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            f"{args[0]} to be ready (log: {log})",
            lambda: (
                proc.poll() is None
                and httpx.get(ready_url, timeout=1, **get).status_code == 200
                or _died(proc, log)
            ),
            timeout=60,
        )
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _died(proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()[-2000:]}")
    return False


@contextmanager
def running_monitoring(root: Path, scrape_target: str) -> Iterator[Monitoring]:
    """Alertmanager, then Prometheus scraping `scrape_target` (host:port) and alerting to it."""
    prometheus = binary("prometheus")
    alertmanager = binary("prometheus-alertmanager", "alertmanager")
    am_port, prom_port = free_port(), free_port()
    (root / "am").mkdir(parents=True, exist_ok=True)
    (root / "prom").mkdir(parents=True, exist_ok=True)
    (root / "alertmanager.yml").write_text(yaml.safe_dump(ALERTMANAGER_CONFIG))
    (root / "rules.yml").write_text(yaml.safe_dump(RULES))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(root / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "lab", "static_configs": [{"targets": [scrape_target]}]}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    am_url, prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
    am_args = [
        alertmanager,
        f"--config.file={root / 'alertmanager.yml'}",
        f"--storage.path={root / 'am'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        # Its default gossips on 0.0.0.0:9094; a test needs no cluster peers.
        "--cluster.listen-address=",
    ]
    prom_args = [
        prometheus,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'prom'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        # Without it, alerts from the first evaluations reach Alertmanager a minute late.
        "--rules.alert.resend-delay=1s",
    ]
    with (
        _process(am_args, root / "alertmanager.log", f"{am_url}/-/ready"),
        _process(prom_args, root / "prometheus.log", f"{prom_url}/-/ready"),
    ):
        yield Monitoring(prometheus=prom_url, alertmanager=am_url, root=root)

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from interlock.lab import Lab, LabError
from tests.integration.lab.support import changes, lab_pids, running_lab


def _monitor(lab: Lab) -> str:
    return lab.status()["monitor"]["url"]


def _alerts(http: httpx.Client, lab: Lab, *filters: str, **params: str) -> list[dict]:
    query = [("filter", f) for f in filters] + list(params.items())
    response = http.get(f"{_monitor(lab)}/api/v2/alerts", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def _query(http: httpx.Client, lab: Lab, promql: str) -> dict[str, str]:
    response = http.get(f"{_monitor(lab)}/api/v1/query", params={"query": promql})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    return {s["metric"]["service"]: s["value"][1] for s in body["data"]["result"]}


def _kill(lab: Lab, service: str) -> None:
    pid = lab.status()["services"][service]["pid"]
    os.kill(pid, signal.SIGKILL)
    while lab.status()["services"][service]["pid"] is not None:
        time.sleep(0.05)


def test_create_writes_the_starting_layout(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    assert not lab.exists()
    lab.create()
    assert lab.exists()

    config = lab.config
    assert set(config["services"]) == {"checkout-api", "inventory-api"}
    ports = [s["port"] for s in config["services"].values()] + [config["monitor_port"]]
    assert len(set(ports)) == 3
    assert config["python"] and config["root"] == str(lab.root)
    assert "{name}" in config["start_argv"]

    checkout = lab.root / "services" / "checkout-api"
    assert os.readlink(checkout / "current") == "releases/v2"
    assert sorted(p.name for p in (checkout / "releases").iterdir()) == ["v0", "v1", "v2"]
    v0 = json.loads((checkout / "releases" / "v0" / "release.json").read_text())
    assert v0 == {"version": "v0", "healthy": False}
    inventory = lab.root / "services" / "inventory-api" / "releases"
    assert sorted(p.name for p in inventory.iterdir()) == ["v1", "v2"]
    assert (lab.root / "access" / "payments-oncall").read_text() == "lee\n"
    assert (lab.root / "access" / "platform-admins").read_text() == "mo\n"

    with pytest.raises(ValueError, match="already exists"):
        lab.create()


def test_create_rejects_bad_names_and_takes_fixed_ports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid service name"):
        Lab(tmp_path / "a").create(services={"../evil": 0})
    with pytest.raises(ValueError, match="reserved"):
        Lab(tmp_path / "b").create(services={"monitor": 0})
    lab = Lab(tmp_path / "c")
    lab.create(services={"billing-api": 41234}, monitor_port=41235)
    assert lab.config["services"]["billing-api"]["port"] == 41234
    assert lab.config["monitor_port"] == 41235
    assert os.readlink(lab.root / "services" / "billing-api" / "current") == "releases/v2"


def test_status_reports_running_services(lab: Lab) -> None:
    status = lab.status()
    assert status["root"] == str(lab.root)
    assert status["groups"] == {"payments-oncall": ["lee"], "platform-admins": ["mo"]}
    for name, svc in status["services"].items():
        assert svc["healthy"] and not svc["degraded"]
        assert svc["version"] == "v2"
        assert svc["pid"] == int(lab.paths.pid_file(name).read_text())
        assert svc["url"] == f"http://127.0.0.1:{svc['port']}"
    started = [c for c in changes(lab) if c["event"] == "started"]
    assert {c["pid"] for c in started} >= {s["pid"] for s in status["services"].values()}


def test_start_leaves_running_processes_alone(lab: Lab) -> None:
    before = {n: s["pid"] for n, s in lab.status()["services"].items()}
    lab.start()
    assert {n: s["pid"] for n, s in lab.status()["services"].items()} == before


def test_start_restarts_only_what_is_down(lab: Lab) -> None:
    before = lab.status()["services"]
    _kill(lab, "inventory-api")
    lab.start()
    after = lab.status()["services"]
    assert after["checkout-api"]["pid"] == before["checkout-api"]["pid"]
    assert after["inventory-api"]["pid"] not in (None, before["inventory-api"]["pid"])
    assert after["inventory-api"]["healthy"]


def test_degrade_fails_traffic_until_reset(lab: Lab, http: httpx.Client) -> None:
    url = lab.status()["services"]["checkout-api"]["url"]
    lab.degrade("checkout-api")

    health = http.get(f"{url}/health")
    assert health.status_code == 503
    assert health.json()["status"] == "failing" and "degraded" in health.json()["reason"]
    codes = [http.get(f"{url}/").status_code for _ in range(50)]
    assert codes.count(500) == 17 and codes.count(200) == 33
    stats = http.get(f"{url}/stats").json()
    assert stats["degraded"] and stats["error_ratio"] == 0.34
    assert stats["requests"] == 50 and stats["errors"] == 17
    assert lab.status()["services"]["checkout-api"]["degraded"]

    lab.reset()
    status = lab.status()["services"]["checkout-api"]
    assert status["healthy"] and not status["degraded"] and status["url"] == url


def test_degrade_unknown_service_names_it(lab: Lab) -> None:
    with pytest.raises(ValueError, match="payments-api"):
        lab.degrade("payments-api")


def test_alerts_fire_while_degraded_and_clear_on_reset(lab: Lab, http: httpx.Client) -> None:
    assert _alerts(http, lab) == []
    lab.degrade("checkout-api")

    first = _alerts(http, lab)
    assert len(first) == 1
    alert = first[0]
    assert alert["labels"] == {
        "alertname": "HighErrorRate",
        "service": "checkout-api",
        "severity": "critical",
        "environment": "lab",
    }
    assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
    assert alert["receivers"] == [{"name": "interlock"}]
    assert "34%" in alert["annotations"]["summary"]
    assert len(alert["fingerprint"]) == 16
    assert alert["generatorURL"].startswith(_monitor(lab))
    assert alert["endsAt"] > alert["updatedAt"]
    time.sleep(0.01)
    again = _alerts(http, lab)[0]
    assert again["startsAt"] == alert["startsAt"]
    assert again["fingerprint"] == alert["fingerprint"]

    lab.reset()
    assert _alerts(http, lab) == []


def test_alert_filters(lab: Lab, http: httpx.Client) -> None:
    lab.degrade("checkout-api")
    _kill(lab, "inventory-api")

    def names(*filters: str, **params: str) -> list[tuple[str, str]]:
        found = _alerts(http, lab, *filters, **params)
        return sorted((a["labels"]["alertname"], a["labels"]["service"]) for a in found)

    both = [("HighErrorRate", "checkout-api"), ("ServiceDown", "inventory-api")]
    assert names() == both
    assert names('service="checkout-api"') == [both[0]]
    assert names('service!="checkout-api"') == [both[1]]
    assert names("alertname=ServiceDown") == [both[1]]
    assert names('{alertname="HighErrorRate", service="checkout-api"}') == [both[0]]
    assert names('alertname="HighErrorRate"', 'service="inventory-api"') == []
    assert names('service=~"inv.*"') == [both[1]]
    assert names('environment="lab"', silenced="false", inhibited="false") == both
    assert names(active="false") == []
    bad = http.get(f"{_monitor(lab)}/api/v2/alerts", params={"filter": "service=="})
    assert bad.status_code == 400


def test_query_api(lab: Lab, http: httpx.Client) -> None:
    assert _query(http, lab, 'error_ratio{service="checkout-api"}') == {"checkout-api": "0"}
    assert _query(http, lab, "up") == {"checkout-api": "1", "inventory-api": "1"}

    lab.degrade("checkout-api")
    _kill(lab, "inventory-api")
    assert _query(http, lab, "error_ratio") == {"checkout-api": "0.34"}
    assert _query(http, lab, "up") == {"checkout-api": "1", "inventory-api": "0"}
    assert _query(http, lab, 'up{service="inventory-api"}') == {"inventory-api": "0"}

    response = http.get(f"{_monitor(lab)}/api/v1/query", params={"query": 'up{service="x"}'})
    sample_body = http.get(f"{_monitor(lab)}/api/v1/query", params={"query": "up"}).json()
    sample = sample_body["data"]["result"][0]
    assert sample["metric"]["__name__"] == "up"
    assert isinstance(sample["value"][0], float) and abs(sample["value"][0] - time.time()) < 60
    assert response.json()["data"]["result"] == []

    for bad in ["rate(error_ratio[5m])", "cpu_seconds", ""]:
        response = http.get(f"{_monitor(lab)}/api/v1/query", params={"query": bad})
        assert response.status_code == 400
        assert response.json()["status"] == "error"
        assert response.json()["errorType"] == "bad_data"


def test_health_proxy(lab: Lab, http: httpx.Client) -> None:
    monitor = _monitor(lab)
    ok = http.get(f"{monitor}/health/checkout-api")
    assert ok.status_code == 200 and ok.json()["version"] == "v2"
    lab.degrade("checkout-api")
    failing = http.get(f"{monitor}/health/checkout-api")
    assert failing.status_code == 503 and failing.json()["status"] == "failing"
    _kill(lab, "inventory-api")
    down = http.get(f"{monitor}/health/inventory-api")
    assert down.status_code == 503 and down.json() == {"service": "inventory-api", "status": "down"}
    assert http.get(f"{monitor}/health/nope").status_code == 404
    assert http.get(f"{monitor}/-/healthy").status_code == 200


def test_broken_release_fails_health_and_fires(lab: Lab, http: httpx.Client) -> None:
    # What a deployment does, by hand: repoint `current`, restart. Reset undoes it.
    current = lab.root / "services" / "checkout-api" / "current"
    current.unlink()
    current.symlink_to("releases/v0")
    _kill(lab, "checkout-api")
    lab.start()

    status = lab.status()["services"]["checkout-api"]
    assert status["version"] == "v0" and status["release"] == "v0" and not status["healthy"]
    health = http.get(f"{status['url']}/health")
    assert health.status_code == 503 and "v0" in health.json()["reason"]
    assert _query(http, lab, 'error_ratio{service="checkout-api"}') == {"checkout-api": "1"}
    assert [a["labels"]["alertname"] for a in _alerts(http, lab)] == ["HighErrorRate"]

    lab.reset()
    assert os.readlink(current) == "releases/v2"
    assert lab.status()["services"]["checkout-api"]["healthy"]


def test_reset_keeps_ports_and_restores_access(lab: Lab) -> None:
    ports = {n: s["port"] for n, s in lab.status()["services"].items()}
    (lab.root / "access" / "payments-oncall").write_text("lee\ndana\n")
    (lab.root / "access" / "new-group").write_text("eve\n")
    lab.reset()
    status = lab.status()
    assert {n: s["port"] for n, s in status["services"].items()} == ports
    assert status["groups"] == {"payments-oncall": ["lee"], "platform-admins": ["mo"]}
    assert changes(lab)[-3]["event"] == "reset"


def test_stop_leaves_no_processes(tmp_path: Path) -> None:
    with running_lab(tmp_path / "lab") as lab:
        assert len(lab_pids(lab.root)) == 3
        lab.stop()
        assert lab_pids(lab.root) == []
        assert not list(lab.paths.run_dir.glob("*.pid"))
        assert all(not s["healthy"] and s["pid"] is None for s in lab.status()["services"].values())
        lab.start()
        assert len(lab_pids(lab.root)) == 3


def test_start_fails_clearly_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        lab = Lab(tmp_path / "lab")
        lab.create(services={"checkout-api": squatter.getsockname()[1]})
        try:
            with pytest.raises(LabError, match="(?s)checkout-api failed to start.*Address already in use"):
                lab.start()
        finally:
            lab.stop()
    assert lab_pids(lab.root) == []

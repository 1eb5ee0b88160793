"""The step-by-step guide to a real Prometheus and Alertmanager (docs/evidence.md) and the
configs it ships (deploy/lab-monitoring/): checked by the servers' own tools (`promtool`,
`amtool`, Debian's packages), the alert rule unit-tested by `promtool test rules`, and the
guide's policy edit and proposal validated by Interlock, so neither can drift from the other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.policy import Policy, default_policy_text, load_policy, validate_against_policy
from interlock.proposals import parse_proposal
from tests.integration.evidence.monitoring import binary

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "deploy" / "lab-monitoring"
GUIDE = (ROOT / "docs" / "evidence.md").read_text()
SECTION = GUIDE.split("### Step by step: a real Prometheus and Alertmanager")[1].split("\n### ")[0]


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """The configs as the guide's step 1 leaves them: copied, the monitor's port filled in."""
    folder = tmp_path / "lab-monitoring"
    shutil.copytree(CONFIGS, folder)
    config = folder / "prometheus.yml"
    assert "LAB_MONITOR_PORT" in config.read_text()
    config.write_text(config.read_text().replace("LAB_MONITOR_PORT", "45678"))
    return folder


def test_prometheus_and_alertmanager_accept_the_shipped_configs(configs: Path) -> None:
    promtool = binary("promtool")
    found = run(promtool, "check", "config", "prometheus.yml", cwd=configs)
    assert "1 rule files found" in found and "SUCCESS: 1 rules found" in found, found
    found = run(binary("amtool"), "check-config", "alertmanager.yml", cwd=configs)
    assert "SUCCESS" in found, found


def test_the_rule_fires_after_its_for_and_resolves_with_the_fix(configs: Path) -> None:
    """The alert the guide waits for: pending for 10 s, firing after, gone once fixed."""
    promtool = binary("promtool")
    case = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "5s",
                # 0.34 for a minute (the degraded lab), then 0 (after the restart).
                "input_series": [
                    {"series": 'error_ratio{service="checkout-api"}', "values": "0.34x12 0x12"},
                    {"series": 'error_ratio{service="inventory-api"}', "values": "0x24"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5s", "alertname": "HighErrorRate", "exp_alerts": []},
                    {
                        "eval_time": "15s",
                        "alertname": "HighErrorRate",
                        "exp_alerts": [
                            {
                                "exp_labels": {"service": "checkout-api", "severity": "page"},
                                "exp_annotations": {"summary": "checkout-api fails 34% of its requests"},
                            }
                        ],
                    },
                    {"eval_time": "90s", "alertname": "HighErrorRate", "exp_alerts": []},
                ],
            }
        ],
    }
    (configs / "rules_test.yml").write_text(yaml.safe_dump(case))
    run(promtool, "test", "rules", "rules_test.yml", cwd=configs)


def guided_policy(tmp_path: Path) -> Path:
    """The default policy edited as step 2 says: the snippet pasted under `sources:`, the
    guide's two lines added to restart_service's evidence_sources."""
    text = default_policy_text()
    snippet = (CONFIGS / "policy-sources.yaml").read_text()
    text = text.replace("\nsources:\n", "\nsources:\n" + snippet, 1)
    lines = re.search(r"```yaml\n(.*?)```", SECTION, re.S)
    assert lines is not None, "the guide's evidence_sources lines"
    added = [line.strip() for line in lines.group(1).splitlines() if line.strip()]
    marker = "      lab-prometheus: {max_age: 30m, checks: [high_error_ratio, service_down]}\n"
    assert marker in text
    text = text.replace(marker, marker + "".join(f"      {line}\n" for line in added), 1)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_the_guides_policy_edit_is_valid_and_waits_for_the_rule(tmp_path: Path) -> None:
    policy = load_policy(guided_policy(tmp_path))
    assert policy.warnings() == []
    restart = policy.actions["restart_service"]
    assert {"prometheus", "alertmanager"} <= set(restart.evidence_sources)
    alertmanager, prometheus = policy.sources["alertmanager"], policy.sources["prometheus"]
    # 5 s scrape + 5 s evaluation (from its rules source) + the rule's 10 s `for`.
    assert alertmanager.settle_needed("high_error_rate", prometheus).total_seconds() == 20


def guide_proposal() -> dict[str, Any]:
    found = re.search(r"cat > real.json <<EOF\n(.*?)\n\s*EOF", SECTION, re.S)
    assert found is not None, "the guide's proposal"
    text = found.group(1).replace("$now", "2026-12-03T10:00:00Z")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_the_guides_proposal_cites_only_checks_the_policy_defines(tmp_path: Path) -> None:
    policy: Policy = load_policy(guided_policy(tmp_path))
    proposal = parse_proposal(guide_proposal(), policy)
    assert [(e.source, e.ref) for e in proposal.evidence] == [
        ("alertmanager", "high_error_rate"),
        ("prometheus", "high_error_ratio"),
    ]
    assert validate_against_policy(proposal, policy) == []

"""The benchmark harness works: `python -m bench --quick` runs every benchmark at a tiny size.

Benchmarks are not tests: this checks that each one runs to the end against the real stack
(dev server, lab, Ansible, PostgreSQL) and writes a results table, not how fast anything is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.benchmarks import BENCHMARKS, Sizes
from bench.growth import WORDS, WORSE
from tests.integration.audit.conftest import PG_URL

REPO = Path(__file__).resolve().parents[3]


# About a minute on a quiet 2-core machine (five real Ansible runs dominate); more under load.
@pytest.mark.timeout(600)
def test_quick_mode_runs_every_benchmark_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--growth", "--out", str(out), "--database-url", PG_URL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert "did not finish" not in text, text
    for benchmark in (
        "round trips",
        "engine overhead",
        "decision latency",
        "first response",
        "Ansible overhead",
        "scale of waiting",
        "audit",
        "durability drill",
    ):
        assert f"| {benchmark} |" in text, f"no {benchmark} row in:\n{text}"
    for status in ("completed", "rolled_back", "rejected", "rejected_by_checks", "expired"):
        assert f"| {status}: " in text
    assert "bare Temporal workflow" in text and "plain `ansible-playbook" in text
    assert "| alert storm |" in text
    assert len(BENCHMARKS) == 8
    assert_growth_rows(text)


def assert_growth_rows(text: str) -> None:
    """--growth: a row per size of each series, then a growth row with its word and expectation."""
    quick = Sizes.quick()
    words = [word for _, word in WORDS] + [WORSE]
    for group, sizes, unit, series in (
        ("waiting", quick.growth_waiting, "waiting", 3),
        ("audit", quick.growth_audit_events, "events", 2),
        ("replay", quick.growth_replays, "histories", 1),
    ):
        rows = [line for line in text.splitlines() if line.startswith(f"| growth: {group} |")]
        growth = [line for line in rows if ": growth |" in line]
        assert len(growth) == series, f"{group}: {growth}"
        for line in growth:
            assert any(f"| {word} (k = " in line for word in words), line
            assert "**met**" in line or "**missed**" in line, line
        for n in sizes:
            at_n = [line for line in rows if f"| {n:,} {unit}" in line and ": growth |" not in line]
            assert len(at_n) == series, f"{group} at {n}: {at_n}"
    assert "## How growth is classified" in text


def test_bad_size_is_refused_with_its_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scale", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--scale must be positive" in done.stderr

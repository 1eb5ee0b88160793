"""The alert storm benchmark at its quick size: its invariants, never its timings.

A storm through the real intake (`interlock api` with tokens), a real worker process and a real
webhook receiver: one owner per incident, every other proposal attached to it, none lost, one
notification per owner and none per duplicate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def row(text: str, metric: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| alert storm | {metric}")]
    return line


@pytest.mark.timeout(600)
def test_quick_storm_attaches_every_duplicate_and_notifies_each_owner_once(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "storm", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert "did not finish" not in text, text
    # --quick: 50 proposals for 5 incidents, so 45 duplicates.
    attached = row(text, "every duplicate attached to its owner")
    assert "45 of 45 attached; 0 lost, 0 misattached; 5 workflows for 5 incidents" in attached, attached
    assert "**met**" in attached
    notified = row(text, "notifications (webhook)")
    assert "5 for 5 owners; 0 other" in notified and "**met**" in notified, notified
    for metric in (
        "time until every owner",
        "time to first response",
        "worker resident memory",
        "CPU seconds",
    ):
        row(text, metric)

"""scripts/make_audit_events.py builds a valid chain of realistic events (the metrics benchmark)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from interlock.audit.metrics import compute_metrics
from interlock.audit.store import AuditStore
from tests.integration.audit.conftest import Backend

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "make_audit_events.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_audit_events", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_audit_events", module)
    spec.loader.exec_module(module)
    return module


def test_fills_a_store_after_its_existing_rows(store: AuditStore, head_file: Path) -> None:
    script = load_script()
    assert (
        script.main(
            [
                "--url",
                store.engine.url.render_as_string(False),
                "--events",
                "3000",
                "--head-file",
                str(head_file),
            ]
        )
        == 0
    )
    assert (
        script.main(
            [
                "--url",
                store.engine.url.render_as_string(False),
                "--events",
                "500",
                "--head-file",
                str(head_file),
                "--seed",
                "2",
            ]
        )
        == 0
    )

    report = store.verify()
    assert report.ok, report.problems
    assert report.events == 3500 and report.head_file_seq == 3500
    metrics = compute_metrics(store)["overall"]
    assert metrics["proposals"] > 300
    assert 0 < metrics["override_ratio"] < 1 and 0 < metrics["false_recommendation_ratio"] < 1
    assert metrics["backlog"] > 0 and metrics["mttr_median_seconds"] > 0


def test_works_on_both_backends(backend: Backend, tmp_path: Path) -> None:
    script = load_script()
    assert script.main(["--url", backend.url, "--events", "1000"]) == 0
    with AuditStore(backend.url) as store:
        assert store.verify().ok
    assert backend.scalar("SELECT COUNT(*) FROM audit_events") == 1000

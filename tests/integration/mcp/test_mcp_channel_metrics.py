"""`interlock metrics --by channel`: proposals counted by how they arrived, read from the
submitted event's `data.channel` (histories from before it was recorded count as `unknown`)."""

from __future__ import annotations

from interlock.audit.metrics import compute_metrics, prometheus_text
from interlock.audit.store import AuditStore
from tests.integration.audit.sample import decision, event, final


def submitted(proposal_id: str, seconds: float, channel: str | None) -> object:
    data = {"proposal": {}, "policy": "v1"} | ({"channel": channel} if channel else {})
    return event(proposal_id, "submitted", seconds, data=data)


def test_metrics_by_channel(store: AuditStore) -> None:
    for e in [
        submitted("A", 0, "mcp"),
        decision("A", 60),
        final("A", 100, "completed"),
        submitted("B", 0, "mcp"),  # still open
        submitted("C", 0, "http"),
        final("C", 10, "rejected_by_checks"),
        submitted("D", 0, "cli"),
        submitted("E", 0, None),  # from before channels were recorded
        event("E", "security", 5, data={"violation": "scope"}),
    ]:
        store.append(e)  # type: ignore[arg-type]

    metrics = compute_metrics(store, by="channel")

    groups = {g["group"]: g for g in metrics["groups"]}
    assert set(groups) == {"cli", "http", "mcp", "unknown", None}
    assert {k: g["proposals"] for k, g in groups.items()} == {
        "cli": 1,
        "http": 1,
        "mcp": 2,
        "unknown": 1,
        None: 0,
    }
    assert groups["mcp"]["completed"] == 1 and groups["mcp"]["backlog"] == 1
    assert groups["mcp"]["mttr_mean_seconds"] == 100
    assert groups["http"]["false_recommendations"] == 1
    # Exception events carry no channel: counted overall, in no channel.
    assert groups[None]["audit_exceptions"] == 1 and metrics["overall"]["audit_exceptions"] == 1
    assert metrics["overall"]["proposals"] == 5
    assert 'interlock_backlog{channel="mcp"} 1' in prometheus_text(metrics)

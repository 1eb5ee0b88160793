"""Example proposals for the walk-through and the tests, with a fresh `observed_at`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PARAMETERS: dict[str, dict[str, str]] = {
    "restart_service": {},
    "rollback_deployment": {"release": "v1"},
    "change_access": {"user": "dana", "group": "payments-oncall", "change": "grant"},
}
RATIONALE = {
    "restart_service": (
        "checkout-api returns 5xx on 34% of requests since 10:02; a restart cleared the same "
        "leak in INC-1190."
    ),
    "rollback_deployment": "errors started right after the v2 deploy; v1 was stable for a week.",
    "change_access": "dana joins the payments on-call rotation this week.",
}


def example_proposal(
    action: str = "restart_service",
    proposal_id: str = "prop-0001",
    service: str = "checkout-api",
    parameters: dict[str, str] | None = None,
    recommender: str = "triage-bot",
    observed_at: datetime | None = None,
    incident: str | None = "INC-1234",
) -> dict[str, Any]:
    if action not in PARAMETERS:
        raise ValueError(f"unknown action {action!r} (known: {', '.join(PARAMETERS)})")
    observed = (observed_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "proposal_id": proposal_id,
        "recommender": recommender,
        "model_version": f"{recommender}/2026.11.2",
        "action": action,
        "target": {"service": service, "environment": "lab"},
        "parameters": dict(PARAMETERS[action] if parameters is None else parameters),
        "rationale": RATIONALE[action],
        "confidence": 0.82,
        "incident": incident,
        # Each item cites a check the policy defines for its source, about the target. Both
        # are confirmed exactly while the service is degraded (`interlock lab degrade
        # checkout-api`); otherwise the proposal ends rejected_by_checks.
        "evidence": [
            {
                "source": "lab-monitor",
                "ref": "unhealthy",
                "observed_at": observed,
                "summary": "5xx ratio 0.34 over 10m",
            },
            {
                "source": "lab-alertmanager",
                "ref": "high_error_rate",
                "observed_at": observed,
                "summary": "HighErrorRate firing",
            },
        ],
    }

"""`interlock list` and `show` at 80 columns: every value whole, no line wider than the terminal
but the commands an approver copies."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

import interlock.cli as cli
import interlock.cli.proposals as cli_proposals
from interlock.models import ProposalState

STATE = Path(__file__).parents[2] / "unit" / "data" / "rollback_awaiting.json"


ROWS = [
    {
        "proposal_id": f"prop-{i:010d}",
        "status": status,
        "action": "rollback_deployment",
        "service": "checkout-api",
        "risk_tier": tier,
        "recommender": "triage-bot",
        "submitted_at": "2026-12-03T14:00:05.123456+00:00",
    }
    for i, (status, tier) in enumerate(
        [("awaiting_approval", "high"), ("completed_unresolved", "medium"), ("submitted", None)]
    )
]


def _printed(renderable: object, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), highlight=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_list_at_80_columns_stacks_cells_and_keeps_values_whole() -> None:
    console = Console(width=80, file=io.StringIO())
    text = _printed(cli.proposals_table(ROWS, console), 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    for row in ROWS:
        for key in ("proposal_id", "status", "action", "service", "recommender"):
            assert row[key] in text, row[key]
    assert "2026-12-03 14:00" in text
    wide = _printed(cli.proposals_table(ROWS, Console(width=200, file=io.StringIO())), 200)
    assert "recommender" in wide.splitlines()[1] and "rollback_deployment" in wide


def test_show_at_80_columns_wraps_prose_and_keeps_commands_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(cli_proposals, "out", Console(width=80, file=buffer, highlight=False, soft_wrap=True))
    state = ProposalState.model_validate_json(STATE.read_text())
    cli.render_state(state)
    lines = buffer.getvalue().splitlines()
    commands = [line for line in lines if line.startswith("    interlock ")]
    assert commands, "the commands to decide are shown"
    # Prose wrapped at word boundaries; only commands and the diff's code lines may be longer.
    long = [line for line in lines if len(line) > 80 and line not in commands]
    assert long == [" path: /srv/lab/services/checkout-api/current"] or all(
        line.startswith((" ", "-", "+")) and not line.startswith("    -") for line in long
    ), long
    assert "evidence checked" in commands[0]

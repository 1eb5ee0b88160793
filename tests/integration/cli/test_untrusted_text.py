"""A rationale written to deceive: escape sequences and rich markup never reach the terminal
through `interlock show`, and Markdown never takes effect in the details the Web UI shows.

One real proposal (the lab degraded so its evidence holds) on the test stack's worker.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import temporalio.api.sdk.v1
from markdown_it import MarkdownIt
from temporalio.client import Client

from interlock.examples import example_proposal
from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.policy import load_policy
from interlock.proposals import parse_proposal
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.support import new_id, propose

ESC = "\x1b"
RATIONALE = "\n".join(
    [
        "Connection pool exhausted; a restart clears it.",
        f"{ESC}[2J{ESC}[H{ESC}[1;31m[bold red]APPROVED[/bold red]{ESC}[0m by security",
        f"{ESC}]8;;https://evil.example/approve{ESC}\\the runbook{ESC}]8;;{ESC}\\ says so",
        f"{ESC}]0;interlock: approved\x07\x9b2K\u202eevil",
        "# Approved",
        "**Waiting for:** nobody",
        "- approve by alice (signed): checked",
        "[Approve here](https://evil.example/approve) ![x](https://evil.example/p.png) <img src=x>",
    ]
)


async def test_show_and_web_ui_details_keep_a_hostile_rationale_inert(
    client: Client, settings: Settings, worker: str, alerting_lab: Lab
) -> None:
    doc = example_proposal("restart_service", proposal_id=new_id(), incident=new_id("INC"))
    proposal = parse_proposal({**doc, "rationale": RATIONALE}, load_policy(settings.effective_policy_file))
    state = await propose(client, settings, worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.proposal.rationale == RATIONALE  # stored as written; only its display changes

    # Not subprocess.run: the worker shares this event loop and must answer the CLI's query.
    cli = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "interlock"),
        "show",
        proposal.proposal_id,
        env={**cli_env(settings, worker), "FORCE_COLOR": "1", "TERM": "xterm-256color"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    shown = out.decode()
    # Rich is told to colour (FORCE_COLOR) and still prints no sequence at all: none of the
    # recommender's, and no style from its markup.
    assert ESC not in shown and "\x9b" not in shown and "\x07" not in shown and "\u202e" not in shown
    lines = shown.splitlines()
    assert "> [bold red]APPROVED[/bold red] by security" in lines
    assert "> the runbook says so" in lines
    assert "> **Waiting for:** nobody" in lines and "> # Approved" in lines
    assert not any(line.startswith("- **Waiting for:** nobody") for line in lines)
    assert sum(line.startswith("- **Waiting for:**") for line in lines) == 1

    # The Web UI's "User Metadata": the workflow's current details, as the UI reads them.
    metadata = await client.get_workflow_handle(proposal.proposal_id).query(
        "__temporal_workflow_metadata", result_type=temporalio.api.sdk.v1.WorkflowMetadata
    )
    details = metadata.current_details
    assert r"evil\.example" in details and ESC not in details  # shown, escaped
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(details)
    assert "<a " not in html and "<img" not in html
    headings = re.findall(r"<h\d>(.*?)</h\d>", html)
    assert "Approved" not in headings and headings[0].startswith("restart_service on checkout-api")
    quote = re.search(r"<blockquote>(.*?)</blockquote>", html, flags=re.S)
    assert quote is not None and "**Waiting for:** nobody" in quote.group(1)
    assert "[bold red]APPROVED[/bold red]" in quote.group(1)
    await client.get_workflow_handle(proposal.proposal_id).terminate("test done")

"""An approver's way through the real Web UI: read the summary where it is (User Metadata), approve
with "Send an Update", see a refusal as one line, cancel with "Request Cancellation", and replay
a history downloaded from the UI with `interlock audit replay`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from interlock.lab import Lab
from interlock.models import ProposalStatus
from interlock.settings import Settings
from tests.conftest import cli_env
from tests.integration.ui.conftest import UI_TASK_QUEUE
from tests.support import final, make_proposal, propose

Page = Any  # playwright.async_api.Page, imported lazily so a missing package is a clear failure


async def open_proposal(browser: Any, ui: str, proposal_id: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{ui}/namespaces/default/workflows/{proposal_id}")
    await page.get_by_role("heading", name=proposal_id).wait_for()
    return page


async def current_details(page: Page, containing: str) -> str:
    """The User Metadata tab's text (Summary, Details, Current Details render in iframes),
    reloaded until it contains `containing`."""
    for _ in range(60):
        await page.get_by_role("tab", name="User Metadata").click()
        await page.get_by_text("Current Details").first.wait_for()
        texts = []
        for frame in page.frames[1:]:
            try:
                texts.append(await frame.inner_text("body", timeout=2000))
            except Exception:  # a frame replaced while the tab re-renders: read it next round
                continue
        # The UI's Markdown typesets "1/2" with a fraction slash (U+2044): read it as typed.
        text = "\n".join(texts).replace("\u2044", "/")
        if containing in text:
            return text
        await asyncio.sleep(1)
        await page.reload()
    raise AssertionError(f"the Web UI never showed {containing!r}; last seen:\n{text}")


async def update_dialog(page: Page, name: str, payload: dict[str, str]) -> Any:
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send an Update").click()
    dialog = page.locator("dialog[open]")
    await dialog.get_by_test_id("update-select-button").click()
    await dialog.get_by_role("option", name=name, exact=True).click()
    await type_payload(page, dialog, payload)
    return dialog


async def type_payload(page: Page, dialog: Any, payload: dict[str, str]) -> None:
    editor = dialog.locator(".cm-content")
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.insert_text(json.dumps(payload))
    # The JSON editor reformats on blur; a Submit click that lands before it is lost.
    await editor.evaluate("element => element.blur()")
    # The payload is in the editor: its reason, or for a signed token its key.
    await dialog.get_by_text(f'"{payload.get("reason", "token")}"').first.wait_for()


async def download_history(page: Page, kind: str, to: Path) -> Path:
    await page.get_by_role("tab", name="Event History").click()
    await page.get_by_role("button", name="Download", exact=True).click()
    dialog = page.locator("dialog[open]")
    await dialog.get_by_text(kind, exact=True).click()
    async with page.expect_download() as info:
        await dialog.get_by_role("button", name="Download", exact=True).click()
    await (await info.value).save_as(to)
    return to


def replay(history: Path, settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interlock.cli", "audit", "replay", "--history", str(history)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "INTERLOCK_HOME": str(settings.home_dir),
            "PATH": str(Path(sys.executable).parent),
            "COLUMNS": "100",
        },
    )


async def test_an_approver_reads_approves_cancels_and_replays_in_the_web_ui(
    ui_env: tuple[WorkflowEnvironment, str],
    ui_settings: Settings,
    ui_worker: str,
    lab: Lab,
    browser: Any,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    env, ui = ui_env
    client: Client = env.client
    lab.reset()
    lab.degrade("checkout-api")
    restart, second = make_proposal(ui_settings), make_proposal(ui_settings)
    states = await asyncio.gather(
        propose(client, ui_settings, ui_worker, restart), propose(client, ui_settings, ui_worker, second)
    )
    assert [s.status for s in states] == [ProposalStatus.AWAITING_APPROVAL] * 2, [s.reasons for s in states]
    assert states[0].risk is not None and states[0].risk.tier.value == "low"

    # 1. The summary, in the tab the README names: who may approve and how, for this tier.
    page = await open_proposal(browser, ui, restart.proposal_id)
    summary = await current_details(page, "Who may still approve")
    assert "awaiting_approval" in summary
    assert "How to decide (low risk)" in summary
    assert "Send an Update, Update name approve" in summary
    assert '{"approver": "alice", "reason": "evidence checked"}' in summary
    assert "-pid " in summary and "+pid " in summary  # the preview's diff, one line per change
    # Each evidence item's details on lines of their own, not run into one paragraph.
    assert "\n\u21b3 source said: checkout-api fails its health check" in summary, summary
    # Tall enough for the whole summary: it renders in an iframe that scrolls on its own.
    await page.set_viewport_size({"width": 1400, "height": 2500})
    await page.screenshot(path=screenshots / "approver-summary.png", full_page=True)
    await page.set_viewport_size({"width": 1400, "height": 1000})

    # 2. A refused approval: the dialog shows the validator's one line, no stack trace.
    dialog = await update_dialog(page, "approve", {"approver": "mallory", "reason": "looks fine"})
    await dialog.get_by_role("button", name="Submit").click()
    refusal = dialog.get_by_text("'mallory' is not an approver in the policy's roster", exact=True)
    await refusal.wait_for()
    shown = await dialog.inner_text()
    assert "Traceback" not in shown and 'File "' not in shown and "workflows/" not in shown
    await dialog.screenshot(path=screenshots / "update-refused.png")
    await dialog.locator("button", has_text="Cancel").click()  # the text button, not the X
    await dialog.wait_for(state="detached")

    # 3. A fresh dialog, as alice (unsigned JSON: this tier allows it): completed.
    dialog = await update_dialog(page, "approve", {"approver": "alice", "reason": "evidence checked"})
    await dialog.screenshot(path=screenshots / "send-an-update.png")
    await dialog.get_by_role("button", name="Submit").click()
    await dialog.wait_for(state="detached")
    done = await final(client, restart.proposal_id)
    assert done.status is ProposalStatus.COMPLETED, done.reasons
    assert [(d.approver, d.signed) for d in done.decisions or []] == [("alice", False)]
    assert "approve by alice" in await current_details(page, ": completed")

    # 4. Request Cancellation on a waiting proposal ends `cancelled`, on record and in the UI.
    page2 = await open_proposal(browser, ui, second.proposal_id)
    await page2.get_by_role("button", name="Request Cancellation").click()
    await page2.locator("dialog[open]").get_by_role("button", name="Confirm").click()
    cancelled = await final(client, second.proposal_id)
    assert cancelled.status is ProposalStatus.CANCELLED, cancelled.reasons
    await current_details(page2, ": cancelled")

    # 5. Both histories an auditor can download from the UI replay against today's code.
    for kind in ("Encoded", "Decoded"):
        history = await download_history(page, kind, tmp_path / f"{kind}.json")
        result = replay(history, ui_settings)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "replay: OK" in result.stdout
        assert "approve" in result.stdout  # the UI's Update is in the replayed timeline
    await page.context.close()
    await page2.context.close()


def sign_commands(summary: str) -> list[str]:
    """The `interlock sign` commands the summary prints, one per approver it names."""
    return [line.strip() for line in summary.splitlines() if line.strip().startswith("interlock sign ")]


async def run_sign(command: str, settings: Settings) -> dict[str, str]:
    """Run a printed `interlock sign ...` command as the approver would (shlex, not a shell).
    Asynchronously: the worker answering its query runs in this test's event loop."""
    import shlex

    args = shlex.split(command)
    assert args[:2] == ["interlock", "sign"], command
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock.cli",
        *args[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**cli_env(settings, UI_TASK_QUEUE), "COLUMNS": "100"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, (out + err).decode()
    token = json.loads(out)
    assert list(token) == ["token"], out
    return token


async def test_a_high_risk_proposal_is_approved_in_the_web_ui_with_two_signed_tokens(
    ui_env: tuple[WorkflowEnvironment, str],
    ui_settings: Settings,
    ui_worker: str,
    lab: Lab,
    browser: Any,
    screenshots: Path,
) -> None:
    """The README's high-risk walk-through, in the UI: a rollback to v0 needs two signed approvals,
    one from the owning group. The approver follows only the summary: its `interlock sign`
    commands, the token pasted into Send an Update; after the first, the summary says who is still
    needed; after the second, the change runs (v0 is broken: it is rolled back by itself)."""
    env, ui = ui_env
    client: Client = env.client
    lab.reset()
    lab.degrade("checkout-api")
    # A low confidence (+14) lifts the rollback to high, whatever else ran on this stack before.
    proposal = make_proposal(ui_settings, "rollback_deployment", parameters={"release": "v0"})
    proposal = proposal.model_copy(update={"confidence": 0.3})
    state = await propose(client, ui_settings, ui_worker, proposal)
    assert state.status is ProposalStatus.AWAITING_APPROVAL, state.reasons
    assert state.risk is not None and state.risk.tier.value == "high", state.risk

    page = await open_proposal(browser, ui, proposal.proposal_id)
    summary = await current_details(page, "How to decide (high risk)")
    assert "Only signed approvals count for high risk" in summary
    assert "Still needed: 2 more approval(s) (0/2)" in summary, summary
    await page.set_viewport_size({"width": 1400, "height": 2600})
    await page.screenshot(path=screenshots / "approver-summary-high.png", full_page=True)
    await page.set_viewport_size({"width": 1400, "height": 1000})
    commands = sign_commands(summary)
    assert commands and all(proposal.proposal_id in c for c in commands), summary

    # The first approver: alice (sre), as the summary prints her command.
    first = next(c for c in commands if "--as alice " in c)
    dialog = await update_dialog(page, "approve", await run_sign(first, ui_settings))
    await dialog.screenshot(path=screenshots / "send-an-update-signed.png")
    await dialog.get_by_role("button", name="Submit").click()
    await dialog.wait_for(state="detached")

    # Now the summary names what is still missing and only who can complete the quorum.
    summary = await current_details(page, "1 more approval(s) (1/2)")
    assert "approve by alice (signed)" in summary, summary
    commands = sign_commands(summary)
    assert commands and not any("--as alice " in c for c in commands), commands
    second = next(c for c in commands if "--as bob " in c)
    dialog = await update_dialog(page, "approve", await run_sign(second, ui_settings))
    await dialog.get_by_role("button", name="Submit").click()
    await dialog.wait_for(state="detached")

    done = await final(client, proposal.proposal_id)
    assert done.status is ProposalStatus.ROLLED_BACK, done.reasons
    assert [(d.approver, d.signed) for d in done.decisions or []] == [("alice", True), ("bob", True)]
    await current_details(page, ": rolled_back")
    await page.context.close()

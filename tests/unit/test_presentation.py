"""What an approver reads, from a real proposal's state (a rollback awaiting approval, captured
from a run against the lab): the order, the Markdown as CommonMark renders it, the diff one line
per change, who may still approve and the commands for the tier. Pure functions; no server."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from interlock.gate import still_needed
from interlock.governance import Governance
from interlock.models import DecisionKind, DecisionRecord, ProposalState, RiskTier
from interlock.policy import default_policy_text, load_policy
from interlock.presentation import approval_details, diff_lines, static_details

STATE = Path(__file__).parent / "data" / "rollback_awaiting.json"


def _render(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


@pytest.fixture
def gov(tmp_path: Path) -> Governance:
    (tmp_path / "policy.yaml").write_text(default_policy_text())
    policy = load_policy(tmp_path / "policy.yaml")
    return Governance.from_policy(
        policy, "rollback_deployment", "lab", "checkout-api", "triage-bot", datetime.now(UTC)
    )


def _state(tier: RiskTier = RiskTier.MEDIUM) -> ProposalState:
    state = ProposalState.model_validate_json(STATE.read_text())
    assert state.risk is not None
    state.risk.tier = tier
    return state


def _alice_approved(plan_hash: str | None) -> DecisionRecord:
    """alice (sre) approved, signed, against `plan_hash`."""
    return DecisionRecord(
        decision=DecisionKind.APPROVE,
        approver="alice",
        reason="ok",
        at=datetime.now(UTC),
        groups=["sre"],
        signed=True,
        plan_hash=plan_hash,
    )


def test_the_summary_leads_with_what_risk_evidence_diff_who_and_how(gov: Governance) -> None:
    details = approval_details(_state(), gov=gov)
    html = _render(details)
    headings = re.findall(r"<h\d>(.*?)</h\d>", html)
    assert headings == [
        "rollback_deployment on checkout-api (lab): awaiting_approval",
        "Risk medium, 44/100: why",
        "Evidence, as its sources answered",
        "Preview (Ansible check mode)",
        "Who may still approve",
        "How to decide (medium risk)",
    ]
    first = html.split("<h3>")[0]
    assert "<strong>What:</strong> rollback_deployment on checkout-api in lab" in first
    assert "<strong>Hosts:</strong> localhost" in first
    assert "<strong>Risk:</strong> medium (44/100)" in first
    # The factor that raised the score most comes first.
    assert re.search(r"Risk medium, 44/100: why</h3>\s*<ul>\s*<li>action \+30", html)


def test_evidence_details_render_one_line_each(gov: Governance) -> None:
    """Each source is one item whose details (source said, answer) sit on lines of their own.
    Not a nested list: Web UI 2.54's stylesheet shows nested items inline, run into one line."""
    html = _render(approval_details(_state(), gov=gov))
    evidence = html.split("Evidence, as its sources answered</h3>")[1].split("<h3>")[0]
    assert evidence.count("<ul>") == 1 and evidence.count("<li>") == 2
    item = (
        r"<li><strong>confirmed</strong>: lab-monitor <code>unhealthy</code>[^<]*<br />\s*"
        r"\u21b3 source said: [^<]*<br />\s*\u21b3 answer: <code>"
    )
    assert re.search(item, evidence), evidence


def test_the_diff_is_a_code_block_with_one_line_per_change(gov: Governance) -> None:
    html = _render(approval_details(_state(), gov=gov))
    blocks = re.findall(r'<pre><code class="language-diff">(.*?)</code></pre>', html, flags=re.S)
    assert len(blocks) == 2
    assert blocks[0].splitlines()[-2:] == ["-src: releases/v2", "+src: releases/v1"]
    assert " path: /srv/lab/services/checkout-api/current" in blocks[0].splitlines()


def test_diff_lines_split_glued_and_dict_lines_and_keep_plain_ones() -> None:
    glued = "--- before\n+++ after\n@@ -1 +1 @@\n-{'src': 'a', 'k': 1}+{'src': 'b', 'k': 1}"
    assert diff_lines(glued)[3:] == ["-src: a", "+src: b", " k: 1"]
    two = "-{'state': 'absent'}\n+{'state': 'link', 'src': 'v1'}"
    assert diff_lines(two) == ["-state: absent", "+state: link", "+src: v1"]
    assert diff_lines("-pid 1\n+pid 2\n") == ["-pid 1", "+pid 2"]
    # Anything but a literal is left as it is: nothing is evaluated.
    assert diff_lines("-{__import__('os').system('x')}") == ["-{__import__('os').system('x')}"]


def test_a_medium_tier_offers_the_unsigned_json_and_names_every_eligible_approver(gov: Governance) -> None:
    details = approval_details(_state(), gov=gov)
    who = details.split("### Who may still approve")[1].split("###")[0]
    # The recommender is not in the roster here; everyone in it may decide medium changes.
    assert [line.split(",")[0] for line in who.splitlines() if line.startswith("- ")] == [
        "- alice",
        "- bob",
        "- carol",
        "- erin",
    ]
    how = details.split("### How to decide (medium risk)")[1]
    assert '{"approver": "alice", "reason": "evidence checked"}' in how
    assert "interlock sign" not in how


def test_a_high_tier_gives_sign_commands_per_approver_and_no_unsigned_json(gov: Governance) -> None:
    state = _state(RiskTier.HIGH)
    pid = state.proposal.proposal_id
    details = approval_details(state, gov=gov)
    how = details.split("### How to decide (high risk)")[1]
    assert '"approver"' not in how and "unsigned JSON is refused" in how
    for name in ("alice", "bob", "carol", "erin"):
        assert f'interlock sign {pid} --as {name} --reason "evidence checked"' in how
    who = details.split("### Who may still approve")[1].split("###")[0]
    assert "2 more approval(s) (0/2); an approval from the owning group payments" in who
    assert "- bob, groups sre, payments (counts as the payments approval)" in who

    # After alice approves, she is no longer offered, and the owner group is still missing.
    state.decisions.append(_alice_approved(state.plan_hash))
    how = approval_details(state, gov=gov).split("### How to decide (high risk)")[1]
    assert "--as alice" not in how and f"interlock sign {pid} --as bob" in how


def test_still_needed_follows_the_gate(gov: Governance) -> None:
    need = still_needed([], gov, RiskTier.HIGH, frozen=False, recommender="bob")
    assert need.approvals == 2 and need.groups == ("payments",) and not need.unsigned_allowed
    # bob proposed it: he cannot decide, so nobody left can fill the owning group.
    assert [c.name for c in need.candidates] == ["alice", "carol", "erin"]
    assert not any(c.fills for c in need.candidates)
    frozen = still_needed([], gov, RiskTier.LOW, frozen=True, recommender="triage-bot")
    assert frozen.groups == ("emergency",)
    assert [c.name for c in frozen.candidates if c.fills] == ["erin"]


def test_static_details_say_the_checks_are_running() -> None:
    state = _state()
    html = _render(static_details(state.proposal, "checkout-api"))
    assert "<h2>rollback_deployment on checkout-api (lab)</h2>" in html
    assert "User Metadata" in html


def test_with_one_approval_left_only_the_owning_group_is_named(gov: Governance) -> None:
    """High risk after alice (sre) approved: the last approval must come from payments, so
    carol and erin, who may approve high risk but are not in payments, are not offered."""
    need = still_needed([_alice_approved("p")], gov, RiskTier.HIGH, frozen=False, recommender="triage-bot")
    assert need.approvals == 1 and need.groups == ("payments",)
    assert [(c.name, c.fills) for c in need.candidates] == [("bob", ("payments",))]
    # Before anyone approved, two approvals are left: one may come from outside payments.
    first = still_needed([], gov, RiskTier.HIGH, frozen=False, recommender="triage-bot")
    assert [c.name for c in first.candidates] == ["alice", "bob", "carol", "erin"]

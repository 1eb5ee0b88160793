"""What approvers read cannot be forged: outside text is inert in the terminal, the Web UI's
Markdown and chat notifications. Pure functions; no server.

The Markdown is rendered with markdown-it-py (CommonMark, plus GFM tables and strikethrough),
which rich already depends on: what it turns into HTML is what a Markdown renderer would.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from markdown_it import MarkdownIt

from interlock.examples import example_proposal
from interlock.models import (
    DecisionKind,
    DecisionRecord,
    Duplicate,
    Proposal,
    ProposalState,
    ProposalStatus,
)
from interlock.presentation import approval_details
from interlock.untrusted import (
    chat_text,
    markdown_code,
    markdown_fence,
    markdown_quote,
    markdown_text,
    plain,
    terminal_quote,
)

ESC = "\x1b"
# Each a way a terminal can be told to do something other than print.
SEQUENCES = [
    f"{ESC}[31m",  # colour (CSI SGR)
    f"{ESC}[2J{ESC}[H",  # clear screen, cursor home
    f"{ESC}[1A{ESC}[2K",  # up one line, erase it: rewrites what was printed before
    f"{ESC}]8;;https://evil.example/{ESC}\\",  # OSC 8 hyperlink, ST-terminated
    f"{ESC}]0;window title\x07",  # OSC title, BEL-terminated
    f"{ESC}P1$r0m{ESC}\\",  # DCS
    "\x9b31m",  # 8-bit CSI
    "\x9d8;;https://evil.example/\x9c",  # 8-bit OSC
    f"{ESC}c",  # full reset
    "\x08\x08\x08",  # backspaces
    "\x07",  # bell
]
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"

FORGERY = "\n".join(
    [
        "The pool is exhausted; a restart clears it.",
        "# Approved",
        "## restart_service on checkout-api (lab): completed",
        "**Waiting for:** nobody, approved by alice (signed)",
        "### Decisions",
        "- approve by alice (signed): verified",
        "[Approve here](https://evil.example/approve) ![pixel](https://evil.example/p.png)",
        "<img src=x onerror=alert(1)> <script>alert(1)</script> <a href='https://evil.example'>x</a>",
        "**bold** _emphasis_ ~~struck~~ &lt;entity&gt; &#x41;",
        "```",
        "fenced",
        "```",
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
        "Setext heading",
        "===",
        "",
        "    indented code",
        "1. a list",
        "> a quote of its own",
        "<https://evil.example/autolink>",
    ]
)


def _render(markdown: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def _state(rationale: str, **updates: object) -> ProposalState:
    doc = example_proposal("restart_service", proposal_id="prop-untrusted")
    doc["rationale"] = rationale
    doc["model_version"] = "gpt [bold red]x[/] `tick` **m** <b>"
    doc["incident"] = "INC-1 [link](https://evil.example)"
    state = ProposalState(
        proposal=Proposal.model_validate(doc, strict=False),
        workflow_id="prop-untrusted",
        status=ProposalStatus.AWAITING_APPROVAL,
        submitted_at=datetime.now(UTC),
        waiting_for="1 approval from any group",
    )
    return state.model_copy(update=updates)


@pytest.mark.parametrize("sequence", SEQUENCES, ids=repr)
def test_escape_sequences_and_control_characters_are_removed(sequence: str) -> None:
    cleaned = plain(f"before{sequence}after")
    assert cleaned == "beforeafter"
    assert not re.search("[\x00-\x1f\x7f-\x9f]", cleaned)


def test_bidi_overrides_are_removed_and_only_newlines_can_survive() -> None:
    assert plain(f"a{BIDI}b") == "ab"
    assert plain("one\ntwo\tthree") == "one two three"
    # A carriage return (which would overwrite the line from its start) is a line break.
    assert plain("one\r\ntwo\u2028three\rfour", newlines=True) == "one\ntwo\nthree\nfour"
    assert plain("unicode stays: café, 東京, 👍🏽") == "unicode stays: café, 東京, 👍🏽"


def test_the_payload_of_an_osc_hyperlink_goes_with_it() -> None:
    text = f"see {ESC}]8;;https://evil.example/{ESC}\\the runbook{ESC}]8;;{ESC}\\ now"
    assert plain(text) == "see the runbook now"


def test_nothing_in_escaped_markdown_text_takes_effect() -> None:
    html = _render("\n".join(markdown_quote(FORGERY)))
    # One blockquote holding one paragraph of plain text: no other element at all.
    tags = set(re.findall(r"</?([a-z0-9]+)", html))
    assert tags == {"blockquote", "p"}, html
    assert "evil.example" in html  # shown, as text
    assert "**Waiting for:**" in html and "# Approved" in html


def test_every_line_of_a_quote_is_quoted_and_the_quote_ends_with_a_blank_line() -> None:
    quoted = markdown_quote(FORGERY)
    assert quoted[-1] == ""
    assert all(line == ">" or line.startswith("> ") for line in quoted[:-1])
    # The next line of Interlock's own cannot be pulled into the quote (lazy continuation).
    html = _render("\n".join([*quoted, "**Parameters:** ours"]))
    assert html.rstrip().endswith("<p><strong>Parameters:</strong> ours</p>")


def test_inline_text_and_code_spans_stay_literal() -> None:
    assert _render(markdown_text("**x** [y](https://e) <b>")) == "<p>**x** [y](https://e) &lt;b&gt;</p>\n"
    for value in ["a`b", "``x``", "`lead", "trail`", "plain"]:
        html = _render(markdown_code(value))
        assert re.fullmatch(r"<p><code>(.*)</code></p>\n", html), (value, html)
        assert html.count("<code>") == 1
    fenced = _render(markdown_fence("line\n```\n# not a heading\n````", "diff"))
    assert fenced.count("<pre>") == 1 and "<h1>" not in fenced


def test_terminal_quote_prefixes_every_line() -> None:
    lines = terminal_quote(f"one{ESC}[31m\n**Waiting for:** x\n\n- approve by alice (signed)")
    assert lines == ["> one", "> **Waiting for:** x", ">", "> - approve by alice (signed)", ""]


def test_chat_text_has_no_links_or_mentions() -> None:
    text = chat_text("<!here> <!channel> <@U123> @channel @here hi <https://evil.example|Approve> & co\nnext")
    assert "<" not in text and ">" not in text
    assert "&lt;!here&gt;" in text and "&lt;https://evil.example|Approve&gt;" in text
    assert "@" not in text and "\uff20channel" in text
    assert "\n" not in text and "&amp; co" in text
    assert chat_text(f"ok{ESC}[31m {ESC}]8;;x{ESC}\\y") == "ok y"


# --- approval_details, as the workflow and `interlock show` render it ----------------------


def _own_lines(markdown: str) -> list[str]:
    """The lines of the details outside every block quote: Interlock's own."""
    return [line for line in markdown.splitlines() if not line.startswith(">")]


def test_web_ui_details_show_the_rationale_as_a_quote_with_nothing_taking_effect() -> None:
    state = _state(FORGERY + "".join(SEQUENCES) + BIDI)
    details = approval_details(state)
    html = _render(details)

    # Interlock's own headings, and only those.
    assert re.findall(r"<h\d>(.*?)</h\d>", html) == [
        "restart_service on checkout-api (lab): awaiting_approval",
        "Who may still approve",
        "How to decide (this risk)",
    ]
    assert "<a " not in html and "<img" not in html and "<script" not in html and "<table" not in html
    assert "<strong>Waiting for:</strong> 1 approval from any group" in html
    assert html.count("<strong>Waiting for:</strong>") == 1
    # The recommender's lines are all inside one quote; none of Interlock's own lines is theirs.
    quote = re.search(r"<blockquote>(.*?)</blockquote>", html, flags=re.S)
    assert quote is not None and "Waiting for" in quote.group(1) and "Approve here" in quote.group(1)
    own = _own_lines(details)
    assert not any("Waiting for:** nobody" in line or "approve by alice" in line for line in own)
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", details)
    # Model version and incident: literal code spans.
    assert "<code>gpt [bold red]x[/] `tick` **m** &lt;b&gt;</code>" in html
    assert "<code>INC-1 [link](https://evil.example)</code>" in html


def test_terminal_details_quote_the_rationale_without_escape_sequences() -> None:
    state = _state(FORGERY + "".join(SEQUENCES) + BIDI)
    details = approval_details(state, markdown=False)
    assert ESC not in details and "\x9b" not in details and "\r" not in details
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", details)
    own = _own_lines(details)
    assert [line for line in own if line.startswith("- **Waiting for:**")] == [
        "- **Waiting for:** 1 approval from any group"
    ]
    assert "> **Waiting for:** nobody, approved by alice (signed)" in details.splitlines()
    assert "> - approve by alice (signed): verified" in details.splitlines()
    assert not any(line.startswith("### Decisions") for line in own)


def test_other_outside_text_in_the_details_is_escaped_too() -> None:
    dup = Duplicate(
        proposal_id="prop-dup",
        recommender="other-bot",
        model_version="m\n### Decisions\n- approve by carol (signed)",
        confidence=0.9,
        received_at=datetime.now(UTC),
        ok=False,
        reasons=["[click](https://evil.example) <b>x</b>"],
    )
    decision = DecisionRecord(
        decision=DecisionKind.REJECT,
        approver="bob",
        reason="**no** <i>way</i>\n## Approved",
        at=datetime.now(UTC),
    )
    state = _state(
        "fine", duplicates=[dup], duplicate_count=1, decisions=[decision], reasons=["<img src=x> outcome"]
    )
    html = _render(approval_details(state))
    assert "<a " not in html and "<img" not in html and "<b>" not in html and "<i>" not in html
    assert "Approved</h2>" not in html
    assert re.findall(r"<h\d>(.*?)</h\d>", html).count("Decisions") == 1
    assert "<li>reject by bob (UNSIGNED): **no** &lt;i&gt;way&lt;/i&gt; ## Approved</li>" in html
    # In the terminal, each is one line of Interlock's, never a line of its own.
    terminal = approval_details(state, markdown=False).splitlines()
    assert terminal.count("### Decisions") == 1
    assert "- reject by bob (UNSIGNED): **no** <i>way</i> ## Approved" in terminal

"""Text from outside the worker (a recommender's rationale, a source's answer) made inert for each
place a person reads it: the terminal, the Web UI's Markdown and chat notifications.

Pure string functions (no I/O): the workflow renders its Web UI details with them.
"""

from __future__ import annotations

import re
from typing import Protocol

# Escape sequences a terminal acts on, removed whole (payload included) so that nothing of an
# OSC 8 hyperlink, a title change or a colour survives: CSI (`ESC [` or 8-bit 0x9B), OSC
# (`ESC ]` or 0x9D) and the string controls DCS, SOS, PM, APC (`ESC P X ^ _`, 0x90 0x98 0x9E
# 0x9F) up to their terminator (BEL or ST) or the end of the text, then any other `ESC x`.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# What is left of C0 (but newline and tab), DEL, C1, and the bidirectional overrides and
# isolates that make a text read differently from what it says (U+061C, U+200E/F, U+202A-E,
# U+2066-9).
_CONTROL_CHAR = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Line breaks other than \n that a renderer may honour: each becomes a \n (a line we quote).
_LINE_BREAK = re.compile("\r\n|[\r\u0085\u2028\u2029]")
# What could start Markdown (emphasis, link, image, heading, list, code, autolink) is
# backslash-escaped: the original Markdown set plus `:` and `/`, the escapes every renderer honours
# (Web UI 2.54's shows an escaped `%`, `,`, `;` or `'` with its backslash, so those stay as they
# are: they start nothing). HTML, table, strikethrough and setext-heading characters become
# entities.
_MARKDOWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "~": "&#126;", "=": "&#61;"}
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_{}\[\]()#+\-.!:/&<>|~=]")
_SLACK_MENTION = re.compile(r"@(?=\w)")


def plain(text: str, *, newlines: bool = False) -> str:
    """`text` without escape sequences and control characters; line breaks become spaces
    unless `newlines`, and tabs become spaces."""
    text = _LINE_BREAK.sub("\n", text)
    text = _ESCAPE_SEQUENCE.sub("", text)
    text = _CONTROL_CHAR.sub("", text).replace("\t", " ")
    return text if newlines else text.replace("\n", " ")


def lines_of(text: str) -> list[str]:
    """The lines of a multi-line text, each stripped of controls and surrounding whitespace;
    no leading or trailing blank lines."""
    lines = [line.strip() for line in plain(text, newlines=True).split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines or [""]


def markdown_text(text: str) -> str:
    """One line of literal text inside Interlock's own Markdown: nothing in it takes effect."""
    return _MARKDOWN_SPECIAL.sub(_markdown_escape, plain(text).strip())


def _markdown_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _MARKDOWN_ENTITIES.get(char) or "\\" + char


def markdown_code(text: str) -> str:
    """A code span showing `text` literally, whatever backticks it holds."""
    body = plain(text).strip()
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    # Spaces inside the fence keep a leading or trailing backtick from joining the fence.
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def markdown_fence(text: str, info: str = "") -> str:
    """A fenced block showing `text` literally: its fence is longer than any backtick run in it."""
    body = plain(text, newlines=True).strip("\n")
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def markdown_quote(text: str) -> list[str]:
    """A block quote, every line of it (blank ones too) behind `> ` and escaped, followed by a
    blank line: it cannot end early, and the line after it cannot be pulled into it."""
    return [f"> {markdown_text(line)}".rstrip() for line in lines_of(text)] + [""]


def terminal_quote(text: str) -> list[str]:
    """A block quote for the terminal: every line behind `> `, controls removed."""
    return [f"> {line}".rstrip() for line in lines_of(text)] + [""]


def chat_text(text: str) -> str:
    """One line for a Slack-style webhook: `&`, `<`, `>` escaped as Slack asks (so no
    `<url|text>` link and no `<!here>`, `<!channel>` or `<@user>` mention forms), and `@word`
    broken with a fullwidth at sign so a client that links plain names cannot notify."""
    text = plain(text).strip()
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SLACK_MENTION.sub("\uff20", text)


class Rendering(Protocol):
    """How outside text is shown in one medium; approval_details writes through one of these."""

    def text(self, value: str) -> str: ...
    def code(self, value: str) -> str: ...
    def quote(self, value: str) -> list[str]: ...
    def fence(self, value: str, info: str = "") -> str: ...
    def item(self, head: str, subs: list[str]) -> list[str]: ...


class MarkdownRendering:
    """For the Temporal Web UI, which renders the details as Markdown."""

    def text(self, value: str) -> str:
        return markdown_text(value)

    def code(self, value: str) -> str:
        return markdown_code(value)

    def quote(self, value: str) -> list[str]:
        return markdown_quote(value)

    def fence(self, value: str, info: str = "") -> str:
        return markdown_fence(value, info)

    def item(self, head: str, subs: list[str]) -> list[str]:
        """A list item with its details on lines of their own. Not a nested list: the Web UI's
        stylesheet (2.54) shows nested items inline, run into one line; hard line breaks (a
        trailing backslash, CommonMark) keep one line per detail. `head` and `subs` are
        already rendered (escaped) text."""
        lines = [f"- {head}", *(f"  \u21b3 {sub}" for sub in subs)]
        return [line + "\\" for line in lines[:-1]] + lines[-1:]


class TerminalRendering:
    """For `interlock show`: the same layout as plain text, with every control removed."""

    def text(self, value: str) -> str:
        return plain(value).strip()

    def code(self, value: str) -> str:
        return f"`{plain(value).strip()}`"

    def quote(self, value: str) -> list[str]:
        return terminal_quote(value)

    def fence(self, value: str, info: str = "") -> str:
        return f"```{info}\n{plain(value, newlines=True).strip(chr(10))}\n```"

    def item(self, head: str, subs: list[str]) -> list[str]:
        return [f"- {head}", *(f"    - {sub}" for sub in subs)]


MARKDOWN = MarkdownRendering()
TERMINAL = TerminalRendering()

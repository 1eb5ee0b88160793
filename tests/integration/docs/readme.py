"""The README's runnable blocks, parsed: the quickstart command and the walk-through's console
blocks (each `$ command` with the output lines the README promises)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"
SKIP = "..."
_BLOCK = re.compile(r"<!-- (quickstart|walkthrough) -->\n```(\w+)\n(.*?)\n```", re.S)


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def blocks(kind: str, text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    return [body for found, _, body in _BLOCK.findall(text) if found == kind]


def quickstart(text: str | None = None) -> str:
    (body,) = blocks("quickstart", text)
    (line,) = [line for line in body.splitlines() if line.strip()]
    return line.split("#", 1)[0].strip()


def walkthrough(text: str | None = None) -> list[Step]:
    steps: list[Step] = []
    for body in blocks("walkthrough", text):
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:].strip()))
            elif line.strip():
                if not steps:
                    raise ValueError(f"output before any command in a walk-through block: {line!r}")
                steps[-1].expected.append(line)
    return steps


def _norm(line: str) -> str:
    return " ".join(line.split())


def mismatch(expected: list[str], output: str) -> str | None:
    """None when `output` shows `expected`: each line is found (spaces collapsed) in the next
    output line, from the first one on; `...` lets any number of lines pass. Else the first
    line not found."""
    lines = [_norm(line) for line in output.splitlines()]
    at, skipping = 0, False
    for want in expected:
        if want.strip() == SKIP:
            skipping = True
            continue
        target = _norm(want)
        while at < len(lines) and target not in lines[at]:
            if not skipping:
                return want
            at += 1
        if at == len(lines):
            return want
        at, skipping = at + 1, False
    return None

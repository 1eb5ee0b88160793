"""Checking the audit chain: recompute every hash in one streaming pass, then explain each break.

The pass keeps only rows near a break, so memory grows with the damage, not the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from interlock.audit.chain import GENESIS, canonical_record


class ProblemKind(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    # Found by the signed checkpoints (interlock/audit/anchor_check.py).
    REWRITTEN = "rewritten"  # rows changed and every later hash recomputed
    RENUMBERED = "renumbered"  # rows deleted and the later ones renumbered and re-chained
    FORGED = "forged_checkpoint"  # a checkpoint in the anchor that no trusted key signed
    UNVERIFIABLE = "unverifiable"  # checkpoints, but no public key to check them with


class Problem(BaseModel):
    # The row the problem is about; for missing rows, the first missing seq and no event_id.
    seq: int | None
    event_id: str | None
    kind: ProblemKind
    detail: str
    # The signed checkpoint the problem was found by, when one was.
    checkpoint_seq: int | None = None
    checkpoint_at: str | None = None


class Head(BaseModel):
    """The newest row a host recorded writing (the head file)."""

    seq: int
    hash: str


@dataclass(slots=True)
class _Row:
    pos: int
    seq: int
    event_id: str
    prev_hash: str
    hash: str
    content_ok: bool  # the stored hash is the hash of the row's content and prev_hash
    linked: bool  # prev_hash is the previous row's hash
    gap_from: int | None  # first missing seq when rows are missing right before this one

    @property
    def broken(self) -> bool:
        return not (self.content_ok and self.linked) or self.gap_from is not None

    def name(self) -> str:
        return f"row {self.seq} ({self.event_id})"


# Hashes -> (seq, event_id) of the rows that have them.
HashLookup = Callable[[list[str]], dict[str, tuple[int, str]]]


def _span(first: int, last: int) -> str:
    return f"row {first} is" if first == last else f"rows {first}-{last} are"


class ChainChecker:
    """Feed it rows in seq order with `scan`, then ask `finish` for the problems."""

    def __init__(self, head: Head | None, marks: dict[int, str] | None = None):
        self.head = head
        # seq -> the hash a signed checkpoint gives that row; the scan sorts the rows it reaches
        # into those that agree (seqs, ascending) and those that do not (seq -> (hash, event_id)).
        self.marks = marks or {}
        self.matched: list[int] = []
        self.mismatched: dict[int, tuple[str, str]] = {}
        self.events = 0
        self.last_seq: int | None = None
        self._rows: dict[int, _Row] = {}
        self._head_row: tuple[int, str, str] | None = None

    def scan(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows are (seq, prev_hash, hash, *canonical_record's arguments)."""
        sha256, record, kept = hashlib.sha256, canonical_record, self._rows
        marks, matched, mismatched = self.marks, self.matched, self.mismatched
        head_seq = self.head.seq if self.head else -1
        prev_hash, next_seq, pos = GENESIS, 1, -1
        before: tuple[Any, ...] | None = None  # the previous row
        before2: tuple[Any, ...] | None = None  # the one before it
        keep_next = 0
        for row in rows:
            pos += 1
            seq, row_prev, row_hash = row[0], row[1], row[2]
            content_ok = sha256((row_prev + record(*row[3:])).encode()).hexdigest() == row_hash
            linked = row_prev == prev_hash
            if not (content_ok and linked) or seq != next_seq:
                gap_from = next_seq if seq != next_seq else None
                kept[pos] = _Row(pos, seq, row[7], row_prev, row_hash, content_ok, linked, gap_from)
                # Explaining a break needs the two rows before it and the two after it.
                for back, neighbour in ((1, before), (2, before2)):
                    if neighbour is not None and pos - back not in kept:
                        kept[pos - back] = _Row(
                            pos - back, neighbour[0], neighbour[7], neighbour[1], neighbour[2],
                            True, True, None,
                        )  # fmt: skip
                keep_next = 2
            elif keep_next:
                kept[pos] = _Row(pos, seq, row[7], row_prev, row_hash, True, True, None)
                keep_next -= 1
            if seq == head_seq:
                self._head_row = (seq, row[7], row_hash)
            mark = marks.get(seq)
            if mark is not None:
                if mark == row_hash:
                    matched.append(seq)
                else:
                    mismatched[seq] = (row_hash, row[7])
            before2, before = before, row
            prev_hash, next_seq = row_hash, seq + 1
        self.events = pos + 1
        self.last_seq = before[0] if before is not None else None

    def finish(self, lookup: HashLookup) -> list[Problem]:
        rows = self._rows
        broken = [rows[pos] for pos in sorted(rows) if rows[pos].broken]
        wanted = {r.prev_hash for r in broken if not r.linked}
        head, head_row = self.head, self._head_row
        if head is not None and head_row is not None and head_row[2] != head.hash:
            wanted.add(head.hash)
        found = lookup(sorted(wanted)) if wanted else {}

        problems: list[Problem] = []
        reported: dict[int, ProblemKind] = {}
        explained: set[int] = set()  # rows whose broken link another row's problem accounts for

        def report(row: _Row, kind: ProblemKind, detail: str) -> None:
            reported[row.pos] = kind
            problems.append(Problem(seq=row.seq, event_id=row.event_id, kind=kind, detail=detail))

        for r in broken:
            p, s = rows.get(r.pos - 1), rows.get(r.pos + 1)
            pred_hash = p.hash if p else GENESIS
            after = f"follows {p.name()}" if p else "is the first row"
            if r.gap_from is not None:
                gap = f"{_span(r.gap_from, r.seq - 1)} missing"
                where = f"{r.name()} follows {p.name()}" if p else f"{r.name()} is the first row"
                problems.append(
                    Problem(
                        seq=r.gap_from,
                        event_id=None,
                        kind=ProblemKind.DELETED,
                        detail=f"{gap}: {where}; they were deleted",
                    )
                )
            # A misplaced row still carries the hash of the row it was written after.
            known_prev = r.prev_hash in found
            linked = r.linked or r.gap_from is not None or r.pos in explained
            if (
                s is not None
                and s.gap_from is None
                and not s.linked
                and s.prev_hash == pred_hash
                and not (not r.linked and known_prev)
            ):
                explained.add(s.pos)
                report(
                    r,
                    ProblemKind.INSERTED,
                    f"{r.name()} does not belong to the chain: {s.name()} links straight to "
                    f"{p.name() if p else 'the start of the chain'}, so it was inserted between them",
                )
                continue
            if not r.content_ok:
                if linked and head is not None and r.seq > head.seq:
                    report(
                        r,
                        ProblemKind.INSERTED,
                        f"{r.name()} has a hash that does not match its content and comes after "
                        f"row {head.seq}, the last row Interlock recorded writing: it was added "
                        "outside Interlock",
                    )
                elif linked or known_prev:
                    report(
                        r,
                        ProblemKind.EDITED,
                        f"{r.name()} was changed after it was written: its content no longer "
                        "matches its hash",
                    )
                else:
                    report(
                        r,
                        ProblemKind.INSERTED,
                        f"{r.name()} has a hash that matches neither its content nor the row "
                        "before it: it was not written by Interlock",
                    )
                continue
            if linked:
                continue
            if known_prev:
                q_seq, q_event = found[r.prev_hash]
                if s is None:
                    next_broken = head is None or (head.seq, head.hash) != (r.seq, r.hash)
                else:
                    next_broken = not s.linked and s.gap_from is None
                moved_before = p is not None and reported.get(p.pos) in (
                    ProblemKind.REORDERED,
                    ProblemKind.INSERTED,
                )
                # A row right after a moved one has a broken link too, but is itself in place.
                if next_broken or not moved_before:
                    report(
                        r,
                        ProblemKind.REORDERED,
                        f"{r.name()} is out of place: it was written right after row {q_seq} "
                        f"({q_event}) but now {after}",
                    )
            elif p is not None and reported.get(p.pos) is ProblemKind.EDITED:
                continue  # the row before was rewritten, its stored hash included
            elif s is not None and s.linked:
                report(
                    r,
                    ProblemKind.DELETED,
                    f"{r.name()} was chained to a row that is no longer in the table (hash "
                    f"{r.prev_hash[:12]}…): a row before it was deleted and the rows renumbered, "
                    f"or the row before it was rewritten",
                )
            else:
                report(
                    r,
                    ProblemKind.INSERTED,
                    f"{r.name()} is chained to a row that does not exist (hash "
                    f"{r.prev_hash[:12]}…): it was not written by Interlock",
                )

        problems.extend(self._truncation(found))
        return problems

    def _truncation(self, found: dict[str, tuple[int, str]]) -> list[Problem]:
        head, last = self.head, self.last_seq
        if head is None:
            return []
        if last is None or last < head.seq:
            ends = "the table is empty" if last is None else f"the table ends at row {last}"
            first = 1 if last is None else last + 1
            return [
                Problem(
                    seq=first,
                    event_id=None,
                    kind=ProblemKind.TRUNCATED,
                    detail=f"{_span(first, head.seq)} missing from the end: Interlock recorded "
                    f"writing row {head.seq} (the head file) but {ends}",
                )
            ]
        row = self._head_row
        if row is not None and row[2] != head.hash and head.hash not in found:
            return [
                Problem(
                    seq=row[0],
                    event_id=row[1],
                    kind=ProblemKind.TRUNCATED,
                    detail=f"row {row[0]} ({row[1]}) is not the row Interlock wrote there (its "
                    "hash differs from the head file's): the newest rows were removed and "
                    "others written in their place",
                )
            ]
        return []

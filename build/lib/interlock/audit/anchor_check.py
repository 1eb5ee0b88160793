"""Checking the chain against the signed checkpoints in the anchor: a rewrite that recomputed every
hash and the head file still disagrees with a checkpoint the worker signed before it.

Only the checkpoints verify relies on have their signatures checked (each disagreeing one, up to
the first genuine one; the newest agreeing one): a signature check costs about 0.1 ms, and a
checkpoint that agrees with the table, forged or not, cannot hide a genuine one that disagrees.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from interlock.audit.anchor import Anchor, Entry
from interlock.audit.checkpoint import Checkpoint, TrustedKeys
from interlock.audit.verify import Problem, ProblemKind

# event_id -> (seq, hash) of the row that has it now, or None.
EventLookup = Callable[[str], tuple[int, str] | None]
SEVERAL = ""  # the wanted hash of a seq two checkpoints disagree about: never equals a row's hash


@dataclass
class AnchorIndex:
    """Every checkpoint's (seq, hash), read once before the rows are scanned."""

    want: dict[int, str] = field(default_factory=dict)
    count: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    # The last entries read: anchors hold checkpoints about in seq order, so the newest are here
    # and verify need not read the anchor a second time to check the newest's signature.
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=64))

    @classmethod
    def load(cls, anchor: Anchor) -> AnchorIndex:
        index = cls()
        for entry in anchor.read():
            if isinstance(entry, tuple):
                index.unreadable.append(entry)
                continue
            seq, digest = entry.get("seq"), entry.get("hash")
            if not isinstance(seq, int) or not isinstance(digest, str) or seq < 1:
                index.unreadable.append((f"checkpoint {seq!r}", "it is not a checkpoint"))
                continue
            index.count += 1
            index.recent.append(entry)
            known = index.want.get(seq)
            if known is None:
                index.want[seq] = digest
            elif known != digest:
                index.want[seq] = SEVERAL
        return index


class AnchorSummary(BaseModel):
    anchor: str | None = None
    checkpoints: int = 0
    checkpoints_checked: int = 0
    # The newest row a genuine checkpoint vouches for, and the rows after it none does yet.
    anchored_seq: int | None = None
    unanchored_rows: int = 0


def _cp_name(cp: Checkpoint) -> str:
    return f"the checkpoint of row {cp.seq} ({cp.event_id}) signed at {cp.at}"


def _problem(
    kind: ProblemKind, seq: int | None, event_id: str | None, detail: str, cp: Checkpoint | None
) -> Problem:
    return Problem(
        seq=seq,
        event_id=event_id,
        kind=kind,
        detail=detail,
        checkpoint_seq=cp.seq if cp else None,
        checkpoint_at=cp.at if cp else None,
    )


class AnchorJudge:
    """After the scan: explain every disagreement between the table and the genuine checkpoints."""

    def __init__(self, anchor: Anchor, index: AnchorIndex, trusted: TrustedKeys, lookup: EventLookup):
        self.anchor, self.index, self.trusted, self.lookup = anchor, index, trusted, lookup
        self.problems: list[Problem] = []
        self.checked = 0
        self._verdicts: dict[tuple[int, str, str, str], bool] = {}

    def _fetch(self, seqs: set[int]) -> dict[int, list[Checkpoint]]:
        found: dict[int, list[Checkpoint]] = {}
        for entry in self.anchor.read(seqs):
            cp = self._parse(entry)
            if cp is not None and cp.seq in seqs:
                found.setdefault(cp.seq, []).append(cp)
        return found

    def _parse(self, entry: Entry) -> Checkpoint | None:
        if isinstance(entry, tuple):
            return None  # already reported from the index
        try:
            return Checkpoint.model_validate(entry)
        except ValidationError as exc:
            where = f"checkpoint of row {entry.get('seq')}"
            self._forged(None, f"{where} in the anchor is malformed ({exc.errors()[0]['msg']}): refused")
            return None

    def _genuine(self, cp: Checkpoint) -> bool:
        key = (cp.seq, cp.hash, cp.key_id, cp.signature)
        if key not in self._verdicts:  # each checkpoint checked, and reported, once
            self.checked += 1
            why = self.trusted.refusal(cp)
            if why is not None:
                self._forged(cp, f"{_cp_name(cp)} is refused: {why}")
            self._verdicts[key] = why is None
        return self._verdicts[key]

    def _forged(self, cp: Checkpoint | None, detail: str) -> None:
        self.problems.append(
            _problem(ProblemKind.FORGED, cp.seq if cp else None, cp.event_id if cp else None, detail, cp)
        )

    def judge(
        self,
        last_seq: int | None,
        matched: list[int],
        mismatched: dict[int, tuple[str, str]],
        already: list[Problem],
    ) -> AnchorSummary:
        """`already` are the chain check's own problems: rows it explains (a swap, an edit left
        unhashed) are not reported twice, nor a truncation the head file caught."""
        for where, why in self.index.unreadable:
            self._forged(None, f"{where} in the anchor is refused: {why}")
        summary = AnchorSummary(anchor=repr(self.anchor), checkpoints=self.index.count)
        end = last_seq or 0
        if self.index.count and not self.trusted:
            self.problems.append(
                _problem(
                    ProblemKind.UNVERIFIABLE,
                    None,
                    None,
                    f"the anchor holds {self.index.count} checkpoint(s) but no public key is trusted to "
                    "check them: set INTERLOCK_AUDIT_PUBLIC_KEY (or give --public-key)",
                    None,
                )
            )
            return summary

        explained = {p.seq for p in already}
        mismatched = {s: v for s, v in mismatched.items() if s not in explained}
        shortfall = self._disagreements(mismatched, matched, end)
        if not any(p.kind is ProblemKind.TRUNCATED for p in already):
            self._beyond_end(end, shortfall)
        anchored = self._newest_genuine(matched)
        summary.checkpoints_checked = self.checked
        summary.anchored_seq = anchored
        summary.unanchored_rows = max(0, end - (anchored or 0))
        return summary

    def _disagreements(self, mismatched: dict[int, tuple[str, str]], matched: list[int], end: int) -> int:
        """Report the first genuine checkpoint the table disagrees with; returns rows it explains
        missing from the end (a deletion with renumbering leaves the table that much shorter)."""
        pending = sorted(mismatched)
        genuine: list[tuple[Checkpoint, tuple[str, str]]] = []
        at = 0
        while at < len(pending) and len(genuine) < 2:
            batch = set(pending[at : at + 16])
            at += 16
            fetched = self._fetch(batch)
            for seq in sorted(batch):
                row_hash, row_event = mismatched[seq]
                for cp in fetched.get(seq, []):
                    if cp.hash != row_hash and self._genuine(cp):
                        genuine.append((cp, (row_hash, row_event)))
                        break
                if len(genuine) == 2:
                    break
        if not genuine:
            return 0
        cp, (_, row_event) = genuine[0]
        later = sum(1 for s in pending if s > cp.seq)
        also = f"; {later} later checkpoint(s) disagree too" if later else ""
        place = self.lookup(cp.event_id)
        k = cp.seq
        if place is not None and place[0] < k:
            moved = k - place[0]
            self.problems.append(
                _problem(
                    ProblemKind.RENUMBERED,
                    place[0],
                    cp.event_id,
                    f"{_cp_name(cp)} is now row {place[0]}: {moved} row(s) before it were deleted and "
                    f"the rows after renumbered and re-chained{also}",
                    cp,
                )
            )
            return moved
        if place is None:
            nxt = genuine[1][0] if len(genuine) > 1 else None
            nxt_place = self.lookup(nxt.event_id) if nxt is not None else None
            if nxt is not None and nxt_place is not None and nxt_place[0] < nxt.seq:
                moved = nxt.seq - nxt_place[0]
                self.problems.append(
                    _problem(
                        ProblemKind.RENUMBERED,
                        k,
                        cp.event_id,
                        f"row {k} ({cp.event_id}), vouched for by {_cp_name(cp)}, was deleted and the rows "
                        f"after it renumbered and re-chained: {nxt.event_id}, checkpointed as row {nxt.seq}, "
                        f"is now row {nxt_place[0]}{also}",
                        cp,
                    )
                )
                return moved
            self.problems.append(
                _problem(
                    ProblemKind.REWRITTEN,
                    k,
                    row_event,
                    f"row {k} is {row_event}, but {_cp_name(cp)} vouches for {cp.event_id}, which is no "
                    f"longer in the table: it was removed and another row written in its place{also}",
                    cp,
                )
            )
            return 0
        if place[0] > k:
            self.problems.append(
                _problem(
                    ProblemKind.INSERTED,
                    place[0],
                    cp.event_id,
                    f"{_cp_name(cp)} is now row {place[0]}: {place[0] - k} row(s) were inserted before it "
                    f"and the chain re-computed{also}",
                    cp,
                )
            )
            return 0
        before = bisect_left(matched, k)
        first = matched[before - 1] + 1 if before else 1
        rows = f"row {k} was" if first == k else f"one of rows {first}-{k} was"
        self.problems.append(
            _problem(
                ProblemKind.REWRITTEN,
                k,
                cp.event_id,
                f"row {k} ({cp.event_id}) no longer has the hash {_cp_name(cp)} gives it: {rows} changed "
                f"and every later hash recomputed{also}",
                cp,
            )
        )
        return 0

    def _beyond_end(self, end: int, explained: int) -> None:
        beyond = sorted((s for s in self.index.want if s > end), reverse=True)
        for start in range(0, len(beyond), 16):
            chunk = beyond[start : start + 16]
            fetched = self._fetch(set(chunk))
            for seq in chunk:
                for cp in fetched.get(seq, []):
                    if self._genuine(cp):
                        if end + explained >= cp.seq:
                            return  # a deletion with renumbering, already reported
                        place = self.lookup(cp.event_id)
                        if place is not None and place[0] < cp.seq:
                            self.problems.append(
                                _problem(
                                    ProblemKind.RENUMBERED,
                                    place[0],
                                    cp.event_id,
                                    f"{_cp_name(cp)} is now row {place[0]}: {cp.seq - place[0]} row(s) "
                                    "before it were deleted and the rows after renumbered and re-chained",
                                    cp,
                                )
                            )
                            return
                        ends = "the table is empty" if end == 0 else f"the table ends at row {end}"
                        first = end + 1
                        span = f"row {first} is" if first == cp.seq else f"rows {first}-{cp.seq} are"
                        self.problems.append(
                            _problem(
                                ProblemKind.TRUNCATED,
                                first,
                                None,
                                f"{span} missing from the end: {_cp_name(cp)} vouches for {cp.events} "
                                f"events but {ends}",
                                cp,
                            )
                        )
                        return

    def _newest_genuine(self, matched: list[int]) -> int | None:
        agreeing = set(matched[-64:])
        for entry in sorted(self.index.recent, key=lambda e: e["seq"], reverse=True):
            cp = self._parse(entry)
            if cp is not None and cp.seq in agreeing and cp.hash == self.index.want.get(cp.seq):
                if cp.seq == matched[-1] and self._genuine(cp):
                    return cp.seq
                break
        for start in range(len(matched), 0, -8):
            chunk = matched[max(0, start - 8) : start]
            fetched = self._fetch(set(chunk))
            for seq in reversed(chunk):
                for cp in fetched.get(seq, []):
                    if cp.hash == self.index.want.get(seq) and self._genuine(cp):
                        return seq
        return None

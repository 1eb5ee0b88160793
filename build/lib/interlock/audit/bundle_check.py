"""Checking an export bundle offline (`interlock audit verify --bundle DIR`): each event's hash, each
checkpoint's signature with only the public key, and that every event is vouched for by a checkpoint.

An event is vouched for when a signed checkpoint names it, or names a later event it is linked to
row by row (each `prev_hash` the `hash` of the row before): each append transaction ends with one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from interlock.audit.chain import canonical_at, canonical_json, canonical_record, chain_hash
from interlock.audit.checkpoint import Checkpoint, CheckpointKeyError, TrustedKeys

CHECKPOINTS_FILE = "checkpoints.jsonl"
PUBLIC_KEY_FILE = "audit-public-key.pub"


class BundleInvalid(ValueError):
    """The folder is not a bundle this version can read."""


class BundleCheck(BaseModel):
    ok: bool
    events: int
    events_hashes_ok: bool
    checkpoints: int
    checkpoints_valid: int
    events_anchored: int
    # Which keys the checkpoints were checked with: given by the auditor, or the bundle's own.
    key_ids: list[str]
    key_source: str
    problems: list[str]


def _canonical(event: dict[str, Any]) -> str:
    at = canonical_at(datetime.fromisoformat(event["at"].replace("Z", "+00:00")))
    return canonical_record(
        event["action"],
        event["actor"],
        at,
        canonical_json(event["data"]),
        event["event_id"],
        event["kind"],
        event["model_version"],
        event["proposal_id"],
        event["recommender"],
        event["risk_tier"],
        event["service"],
        event["status"],
        event["trace_id"],
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise BundleInvalid(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BundleInvalid(f"{path} is not JSON lines: {exc}") from None


def check_bundle(folder: Path, trusted: TrustedKeys | None = None) -> BundleCheck:
    """Check the bundle in `folder`; without `trusted`, with the public key the bundle carries."""
    if not (folder / "events.jsonl").is_file():
        raise BundleInvalid(f"{folder} has no events.jsonl: not an audit bundle")
    source = "given"
    if trusted is None:
        try:
            trusted = TrustedKeys.parse(str(folder / PUBLIC_KEY_FILE))
        except CheckpointKeyError as exc:
            raise BundleInvalid(str(exc)) from None
        source = f"the bundle's own {PUBLIC_KEY_FILE}: compare its key id with the one you trust"
    events = _lines(folder / "events.jsonl")
    raw = _lines(folder / CHECKPOINTS_FILE) if (folder / CHECKPOINTS_FILE).exists() else []
    problems: list[str] = []

    by_seq: dict[int, dict[str, Any]] = {}
    hashes_ok = True
    for e in events:
        try:
            ok = chain_hash(e["prev_hash"], _canonical(e)) == e["hash"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleInvalid(f"events.jsonl: an event lacks a field ({exc})") from None
        if not ok:
            hashes_ok = False
            problems.append(f"event {e['seq']} ({e['event_id']}): its hash does not match its content")
        by_seq[e["seq"]] = e

    vouched: set[int] = set()
    valid = 0
    for entry in raw:
        try:
            cp = Checkpoint.model_validate({k: v for k, v in entry.items() if k != "signed"})
        except ValidationError as exc:
            problems.append(f"a checkpoint is malformed: {exc.errors()[0]['msg']}")
            continue
        why = trusted.refusal(cp)
        if why is not None:
            problems.append(f"the checkpoint of row {cp.seq} is refused: {why}")
            continue
        valid += 1
        event = by_seq.get(cp.seq)
        if event is None:
            continue  # the chain head at export time: a row of another proposal
        if (event["hash"], event["event_id"]) != (cp.hash, cp.event_id):
            problems.append(
                f"event {cp.seq} ({event['event_id']}) is not the row the checkpoint signed at {cp.at} "
                f"vouches for ({cp.event_id}, hash {cp.hash[:12]}…)"
            )
            continue
        vouched.add(cp.seq)

    anchored: set[int] = set()
    for seq in sorted(by_seq, reverse=True):
        after = by_seq.get(seq + 1)
        linked = after is not None and after["prev_hash"] == by_seq[seq]["hash"] and seq + 1 in anchored
        if seq in vouched or linked:
            anchored.add(seq)
    loose = sorted(set(by_seq) - anchored)
    if loose:
        problems.append(f"event(s) {', '.join(map(str, loose))}: no signed checkpoint vouches for them")
    return BundleCheck(
        ok=not problems,
        events=len(events),
        events_hashes_ok=hashes_ok,
        checkpoints=len(raw),
        checkpoints_valid=valid,
        events_anchored=len(anchored),
        key_ids=trusted.ids,
        key_source=source,
        problems=problems,
    )


def checkpoint_lines(checkpoints: list[Checkpoint]) -> str:
    """checkpoints.jsonl: each checkpoint with `signed`, the exact text its signature covers."""
    return "".join(
        json.dumps({**cp.model_dump(), "signed": cp.message().decode()}, sort_keys=True) + "\n"
        for cp in checkpoints
    )

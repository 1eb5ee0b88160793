"""What an attacker who owns the audit database does: rewrite rows and re-chain every later hash,
then rewrite the head file, so the hash chain alone shows nothing. Raw SQL, behind the store's back."""

from __future__ import annotations

import json
from pathlib import Path

from interlock.audit.chain import GENESIS, chain_hash
from interlock.audit.store import AuditStore, canonical_row
from tests.integration.audit.conftest import Backend


def rechain(backend: Backend, head_file: Path) -> None:
    """Recompute every row's prev_hash and hash from the first row on, and point the head file at
    the new last row: what Interlock's own writer would have produced for the rows as they are."""
    with AuditStore(backend.url) as plain:
        rows = list(plain.events())
    prev = GENESIS
    for row in rows:
        digest = chain_hash(prev, canonical_row(row))
        backend.sql(
            "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s", p=prev, h=digest, s=row.seq
        )
        prev = digest
    if rows:
        head_file.write_text(json.dumps({"seq": rows[-1].seq, "hash": prev}))
    else:
        head_file.unlink(missing_ok=True)
    # The store's own copies of the checkpoints are the owner's to delete too.
    backend.sql("DELETE FROM audit_checkpoints")


def renumber_after(backend: Backend, seq: int) -> None:
    """Close the gap a deleted row left: every later row moves down by one."""
    last = backend.scalar("SELECT MAX(seq) FROM audit_events") or 0
    for s in range(seq + 1, last + 1):
        backend.sql("UPDATE audit_events SET seq = :n WHERE seq = :s", n=s - 1, s=s)

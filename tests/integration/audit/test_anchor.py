"""Signed checkpoints anchored outside the database: an attacker who owns the audit database edits,
deletes or truncates rows, re-chains every later hash and rewrites the head file, and verify still
names the row and the checkpoint that disagree. Each store runs on SQLite and PostgreSQL, each
anchor is a folder or a table in another PostgreSQL schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from interlock.audit.anchor import Anchor, DirectoryAnchor, PostgresAnchor
from interlock.audit.chain import canonical_json
from interlock.audit.checkpoint import CheckpointSigner, TrustedKeys
from interlock.audit.store import AuditStore, VerifyReport
from interlock.audit.verify import ProblemKind
from tests.integration.audit.anchoring import rechain, renumber_after
from tests.integration.audit.conftest import PG_URL, Backend, pg_dsn, with_options
from tests.integration.audit.sample import lifecycle

REWRITTEN, RENUMBERED, TRUNCATED = ProblemKind.REWRITTEN, ProblemKind.RENUMBERED, ProblemKind.TRUNCATED
FORGED = ProblemKind.FORGED
EVENTS = lifecycle("p-1") + lifecycle("p-2", start=1000)
EVENT_IDS = [e.event_id for e in EVENTS]

AnchorFactory = Callable[[], Anchor]
Verify = Callable[[], VerifyReport]


def row(seq: int) -> str:
    return EVENT_IDS[seq - 1]


@pytest.fixture(params=["folder", "postgresql"])
def open_anchor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnchorFactory]:
    if request.param == "folder":
        yield lambda: DirectoryAnchor(tmp_path / "anchor")
        return
    schema = f"anchor_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield lambda: PostgresAnchor(with_options(PG_URL, search_path=schema))
    finally:
        with psycopg.connect(pg_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(Ed25519PrivateKey.generate())


@pytest.fixture
def writer(
    backend: Backend, head_file: Path, signer: CheckpointSigner, open_anchor: AnchorFactory
) -> Iterator[AuditStore]:
    """The worker's store: every append signs a checkpoint. Ten rows, one append each."""
    with AuditStore(backend.url, head_file, signer=signer, anchor=open_anchor()) as store:
        store.migrate()
        for e in EVENTS:
            store.append(e)
        yield store


@pytest.fixture
def verify(
    backend: Backend, head_file: Path, open_anchor: AnchorFactory, signer: CheckpointSigner
) -> Callable[[], VerifyReport]:
    """verify as an auditor runs it: no signing key, only the public key."""

    def run() -> VerifyReport:
        trusted = TrustedKeys([signer.public_key])
        with AuditStore(backend.url, head_file, anchor=open_anchor(), trusted=trusted) as auditor:
            return auditor.verify()

    return run


def found(report: VerifyReport) -> list[tuple[int | None, str | None, ProblemKind, int | None]]:
    assert not report.ok
    return [(p.seq, p.event_id, p.kind, p.checkpoint_seq) for p in report.problems]


def test_each_append_is_checkpointed_in_the_store_and_the_anchor(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    writer.append_many(lifecycle("p-3", start=2000)[:3])  # one transaction, one checkpoint

    stored = writer.stored_checkpoints()
    assert [c.seq for c in stored] == [*range(1, 11), 13]
    assert [(c.event_id, c.events) for c in stored][-1] == ("p-3/decision/1", 13)
    anchor = open_anchor()
    anchored = [e for e in anchor.read() if isinstance(e, dict)]
    anchor.close()
    assert sorted(e["seq"] for e in anchored) == [*range(1, 11), 13]
    report = verify()
    assert report.ok, report.problems
    assert (report.checkpoints, report.anchored_seq, report.unanchored_rows) == (11, 13, 0)
    assert report.checkpoints_checked == 1  # only the newest needs its signature checked


def test_an_edit_rechained_with_a_rewritten_head_is_caught(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    data = {"decision": "approve", "approver": "mallory", "reason": "", "signed": True, "human": True}
    backend.sql(
        f"UPDATE audit_events SET data = {backend.json('d')}, actor = 'mallory' WHERE seq = 3",
        d=canonical_json(data),  # as Interlock writes it, so the recomputed hashes hold
    )
    rechain(backend, head_file)
    with AuditStore(backend.url, head_file) as chain_only:
        assert chain_only.verify().ok, "the hash chain and the head file alone see nothing"

    report = verify()

    assert found(report) == [(3, row(3), REWRITTEN, 3)]
    assert "row 3 was changed and every later hash recomputed" in report.problems[0].detail
    assert "7 later checkpoint(s) disagree too" in report.problems[0].detail


def test_a_deletion_with_renumbering_and_a_rewritten_head_is_caught(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    backend.sql("DELETE FROM audit_events WHERE seq = 4")
    renumber_after(backend, 4)
    rechain(backend, head_file)
    with AuditStore(backend.url, head_file) as chain_only:
        assert chain_only.verify().ok

    report = verify()

    assert found(report) == [(4, row(4), RENUMBERED, 4)]
    detail = report.problems[0].detail
    assert f"{row(5)}, checkpointed as row 5, is now row 4" in detail, detail


def test_several_rows_deleted_before_a_checkpointed_row(
    backend: Backend, head_file: Path, open_anchor: AnchorFactory, signer: CheckpointSigner, verify: Verify
) -> None:
    # One transaction of five rows: one checkpoint, at its last row. Rows 2-3 go.
    with AuditStore(backend.url, head_file, signer=signer, anchor=open_anchor()) as store:
        store.migrate()
        store.append_many(lifecycle("p-1"))
    backend.sql("DELETE FROM audit_events WHERE seq IN (2, 3)")
    renumber_after(backend, 3)
    renumber_after(backend, 2)
    rechain(backend, head_file)

    report = verify()

    assert found(report) == [(3, "p-1/final/1", RENUMBERED, 5)]
    assert "2 row(s) before it were deleted" in report.problems[0].detail


def test_a_truncated_tail_with_a_rewritten_head_is_caught(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    backend.sql("DELETE FROM audit_events WHERE seq > 8")
    rechain(backend, head_file)  # the head file now names row 8
    with AuditStore(backend.url, head_file) as chain_only:
        assert chain_only.verify().ok

    report = verify()

    assert found(report) == [(9, None, TRUNCATED, 10)]
    assert "rows 9-10 are missing from the end" in report.problems[0].detail
    assert "vouches for 10 events but the table ends at row 8" in report.problems[0].detail


def test_a_tail_replaced_by_new_rows_is_caught(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    # Truncated, then the worker goes on writing: its new checkpoints name the same row numbers.
    backend.sql("DELETE FROM audit_events WHERE seq > 8")
    rechain(backend, head_file)
    for e in lifecycle("p-3", start=5000)[:2]:
        writer.append(e)

    report = verify()

    assert found(report) == [(9, "p-3/submitted/1", REWRITTEN, 9)]
    assert f"vouches for {row(9)}, which is no longer in the table" in report.problems[0].detail


def test_a_forged_checkpoint_is_refused(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    signer = writer.signer
    assert signer is not None
    # A row added at the end outside Interlock, "vouched for" by a checkpoint signed with another key.
    with AuditStore(backend.url, head_file) as plain:
        appended = plain.append(lifecycle("p-9", start=9000)[0])
    forger = CheckpointSigner(Ed25519PrivateKey.generate())
    forged = forger.sign(appended.seq, "p-9/submitted/1", appended.hash)
    # And one claiming the trusted key's id, with the forger's signature.
    spoofed = forged.model_copy(update={"key_id": signer.key_id})
    anchor = open_anchor()
    anchor.write([forged, spoofed])
    anchor.close()

    report = verify()

    assert [(p.seq, p.kind) for p in report.problems] == [(11, FORGED), (11, FORGED)]
    details = " ".join(p.detail for p in report.problems)
    assert "not a trusted audit key" in details and "does not verify with the trusted key" in details
    assert (report.anchored_seq, report.unanchored_rows) == (10, 1), "the forged one vouches for nothing"


def test_a_forged_checkpoint_cannot_hide_a_rewrite(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory, verify: Verify
) -> None:
    backend.sql("UPDATE audit_events SET status = 'completed' WHERE seq = 8")
    rechain(backend, head_file)
    with AuditStore(backend.url) as plain:
        rows = {r.seq: r for r in plain.events()}
    forger = CheckpointSigner(Ed25519PrivateKey.generate())
    anchor = open_anchor()
    anchor.write([forger.sign(s, rows[s].event_id, rows[s].hash) for s in (8, 9, 10)])
    anchor.close()

    report = verify()

    assert [(p.seq, p.kind, p.checkpoint_seq) for p in report.problems] == [(8, REWRITTEN, 8)]


def test_checkpoints_without_a_trusted_key_fail_verify(
    writer: AuditStore, backend: Backend, head_file: Path, open_anchor: AnchorFactory
) -> None:
    with AuditStore(backend.url, head_file, anchor=open_anchor()) as auditor:
        report = auditor.verify()
    assert [p.kind for p in report.problems] == [ProblemKind.UNVERIFIABLE]
    assert "INTERLOCK_AUDIT_PUBLIC_KEY" in report.problems[0].detail


def test_a_lost_anchor_write_is_repaired_by_the_retry(
    backend: Backend, head_file: Path, tmp_path: Path, signer: CheckpointSigner
) -> None:
    folder = tmp_path / "anchor"
    folder.write_text("not a folder")  # the anchor cannot be written
    with AuditStore(backend.url, head_file, signer=signer, anchor=DirectoryAnchor(folder)) as store:
        store.migrate()
        with pytest.raises(Exception, match="row 1 is recorded but its checkpoint is not"):
            store.append(EVENTS[0])
        folder.unlink()
        assert store.append(EVENTS[0]).duplicate  # the activity's retry
    lines = (folder / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1]

"""The export bundle's audit files are checked offline with only the audit public key: every hash,
every checkpoint signature, and that each event is vouched for. Edits to the bundle (even with the
hashes recomputed) and checkpoints re-signed with another key are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from interlock.audit.anchor import DirectoryAnchor
from interlock.audit.bundle import write_audit_files
from interlock.audit.bundle_check import CHECKPOINTS_FILE, PUBLIC_KEY_FILE, checkpoint_lines
from interlock.audit.chain import chain_hash
from interlock.audit.checkpoint import Checkpoint, CheckpointSigner
from interlock.audit.store import AuditStore
from interlock.cli import app
from tests.integration.audit.conftest import Backend
from tests.integration.audit.sample import lifecycle


def export(backend: Backend, tmp_path: Path, signer: CheckpointSigner) -> Path:
    """p-1's audit files, its events written in two transactions with p-2's in between."""
    p1, p2 = lifecycle("p-1"), lifecycle("p-2", start=1000)
    with AuditStore(
        backend.url, tmp_path / "head.json", signer=signer, anchor=DirectoryAnchor(tmp_path / "a")
    ) as s:
        s.migrate()
        s.append_many(p1[:2])
        s.append(p2[0])
        s.append_many(p1[2:])
        s.append(p2[1])
        chain = s.verify()
        out = tmp_path / "bundle"
        out.mkdir()
        events_ok, check = write_audit_files(s, s.timeline("p-1"), chain, out)
    assert events_ok and check.ok, check.problems
    # Only the bundle travels: the auditor has no database, no anchor, no signing key.
    offline = tmp_path / "offline"
    shutil.copytree(out, offline)
    return offline


def verify(bundle: Path, *key: str) -> tuple[int, str]:
    args = ["audit", "verify", "--bundle", str(bundle), "--json"]
    result = CliRunner().invoke(app, args + (["--public-key", key[0]] if key else []))
    return result.exit_code, result.output


def test_a_bundle_verifies_offline_with_only_the_public_key(backend: Backend, tmp_path: Path) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    bundle = export(backend, tmp_path, signer)

    code, output = verify(bundle, signer.public_key_text())

    assert code == 0, output
    report = json.loads(output)
    assert (report["events"], report["events_anchored"]) == (5, 5)
    # Checkpoints of p-1's two transactions (rows 2 and 6) and of the chain's head (row 7).
    assert report["checkpoints_valid"] == 3 and report["key_ids"] == [signer.key_id]
    assert report["key_source"] == "given"
    code, output = verify(bundle)  # with the key the bundle carries: said so
    assert code == 0 and "the bundle's own audit-public-key.pub" in json.loads(output)["key_source"]


def test_an_edited_bundle_with_recomputed_hashes_is_refused(backend: Backend, tmp_path: Path) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    bundle = export(backend, tmp_path, signer)
    events = [json.loads(line) for line in (bundle / "events.jsonl").read_text().splitlines()]
    events[2]["actor"] = "mallory"  # the approval, row 4 of the store
    # Its hash recomputed, and the next row of the proposal linked to it again.
    events[2]["canonical"] = events[2]["canonical"].replace('"actor":"alice"', '"actor":"mallory"')
    events[2]["hash"] = chain_hash(events[2]["prev_hash"], events[2]["canonical"])
    events[3]["prev_hash"] = events[2]["hash"]
    events[3]["hash"] = chain_hash(events[3]["prev_hash"], events[3]["canonical"])
    events[4]["prev_hash"] = events[3]["hash"]
    events[4]["hash"] = chain_hash(events[4]["prev_hash"], events[4]["canonical"])
    (bundle / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    code, output = verify(bundle, signer.public_key_text())

    assert code == 1, output
    problems = json.loads(output)["problems"]
    assert any("event 6 (p-1/final/1) is not the row the checkpoint" in p for p in problems), problems
    assert any("no signed checkpoint vouches for them" in p for p in problems), problems


def test_checkpoints_resigned_with_another_key_are_refused(backend: Backend, tmp_path: Path) -> None:
    signer = CheckpointSigner(Ed25519PrivateKey.generate())
    bundle = export(backend, tmp_path, signer)
    forger = CheckpointSigner(Ed25519PrivateKey.generate())
    lines = (bundle / CHECKPOINTS_FILE).read_text().splitlines()
    genuine = [
        Checkpoint.model_validate({k: v for k, v in json.loads(x).items() if k != "signed"}) for x in lines
    ]
    forged = [forger.sign(c.seq, c.event_id, c.hash) for c in genuine]
    (bundle / CHECKPOINTS_FILE).write_text(checkpoint_lines(forged))
    (bundle / PUBLIC_KEY_FILE).write_text(forger.public_key_text() + "\n")

    code, output = verify(bundle, signer.public_key_text())

    assert code == 1, output
    problems = json.loads(output)["problems"]
    assert sum("not a trusted audit key" in p for p in problems) == 3, problems
    # With the forger's key the bundle passes: the auditor must bring the key they trust.
    assert verify(bundle)[0] == 0

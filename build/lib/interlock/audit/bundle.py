"""`interlock audit export`: one proposal's evidence as files an auditor can check offline.

Every check the bundle supports needs only Python's standard library (hashes) or Interlock
itself without a server (`interlock audit replay --history history.json`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interlock.audit.bundle_check import (
    CHECKPOINTS_FILE,
    PUBLIC_KEY_FILE,
    BundleCheck,
    check_bundle,
    checkpoint_lines,
)
from interlock.audit.chain import chain_hash
from interlock.audit.history import check_signatures, history_json, read_history, replay
from interlock.audit.store import canonical_row
from interlock.policy import default_policy_text, parse_policy

if TYPE_CHECKING:
    from temporalio.client import WorkflowHistory

    from interlock.audit.store import AuditEvent, AuditStore, VerifyReport
    from interlock.settings import Settings

README = """# Audit bundle of proposal {proposal_id}

Written by `interlock audit export` at {created_at}. Everything here can be checked without
the Temporal server or the audit database.

| file | what it is |
|---|---|
| history.json | Temporal's workflow history, as `temporal workflow show --output json` writes it |
| events.jsonl | the proposal's audit events from the hash-chained store, one JSON object a line |
| policy.yaml | the policy (version {policy_included}); the proposal was assessed under {policy_applied} |
| signatures.json | each signed decision token, re-verified against that policy's roster |
| verification.json | the whole chain's verify result, the events' recomputed hashes, the replay result |
| checkpoints.jsonl | the worker's signed checkpoints of these events' rows (and of the chain's head) |
| audit-public-key.pub | the public key(s) the checkpoints were checked with (Ed25519, base64) |
| MANIFEST.json | sha256 and size of every file above, and the summary of the checks |

## How to check

1. Files unchanged: `sha256sum -c SHA256SUMS`.
2. Each audit event: `hash == sha256(prev_hash + canonical)`, where `canonical` is the event's
   columns (all but seq, prev_hash, hash) as JSON with sorted keys, no spaces, UTF-8:

       python3 -c 'import hashlib,json,sys
       for l in open("events.jsonl"):
           e=json.loads(l); ok=hashlib.sha256((e["prev_hash"]+e["canonical"]).encode()).hexdigest()==e["hash"]
           print(e["seq"], e["kind"], "ok" if ok else "MISMATCH")'

   The `prev_hash` of each event is the `hash` of the row before it in the whole store, so rows of
   other proposals may sit between two of these.
3. The decisions are what the code decides: `interlock audit replay --history history.json`
   (exit 0: the workflow code makes the same decisions as the recorded history).
4. Signatures: signatures.json lists each token with `valid` and why; re-check one with the
   public keys in policy.yaml (Ed25519 over the token's first part).
5. Checkpoints, offline, with only the audit public key (get it from the operator, not from here):

       interlock audit verify --bundle . --public-key KEY_OR_FILE

   checks every event's hash, every checkpoint's signature (Ed25519 over its `signed` text, with
   the key whose sha256[:16] is `key_id`), and that each event is vouched for: a checkpoint names
   it, or a later event it is linked to row by row. A checkpoint is the worker's signature of the
   chain up to that row, so a row edited, deleted or renumbered since no longer matches it.

Summary: {summary}
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_audit_files(
    store: AuditStore, rows: list[AuditEvent], chain: VerifyReport, out: Path
) -> tuple[bool, BundleCheck]:
    """events.jsonl, checkpoints.jsonl and the public key; (every hash recomputes, the offline check)."""
    events_ok = True
    with open(out / "events.jsonl", "w") as handle:
        for row in rows:
            canonical = canonical_row(row)
            ok = chain_hash(row.prev_hash, canonical) == row.hash
            events_ok &= ok
            record = row.model_dump(mode="json")
            handle.write(json.dumps({**record, "canonical": canonical, "hash_ok": ok}) + "\n")
    # The checkpoints of the proposal's own rows, and the newest one: the chain's head at export.
    seqs = {row.seq for row in rows} | ({chain.anchored_seq} if chain.anchored_seq else set())
    # Only those the exporter's trusted keys verify: another key's are not its to vouch for.
    vouched = [c for c in store.checkpoints_of(seqs) if store.trusted.refusal(c) is None]
    (out / CHECKPOINTS_FILE).write_text(checkpoint_lines(vouched))
    (out / PUBLIC_KEY_FILE).write_text("".join(k + "\n" for k in store.trusted.texts()))
    return events_ok, check_bundle(out, store.trusted)


async def write_bundle(
    settings: Settings, store: AuditStore, proposal_id: str, history: WorkflowHistory, out: Path
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    facts = read_history(history)
    rows = store.timeline(proposal_id)
    chain = store.verify()
    events_ok, anchored = write_audit_files(store, rows, chain, out)

    (out / "history.json").write_text(history_json(history))

    applied = next((r.data.get("policy") for r in rows if r.kind == "submitted"), None)
    policy_path = settings.effective_policy_file
    policy_text = policy_path.read_text() if policy_path is not None else default_policy_text()
    policy = parse_policy(policy_text, policy_path or "<default policy>")
    (out / "policy.yaml").write_text(policy_text)

    signatures = check_signatures(facts, policy)
    (out / "signatures.json").write_text(json.dumps(signatures, indent=2) + "\n")

    replay_error = await replay(history)
    verification = {
        "chain": chain.model_dump(mode="json"),
        "proposal_events": len(rows),
        "proposal_events_hashes_ok": events_ok,
        "replay": {"deterministic": replay_error is None, "error": replay_error},
        "policy_version_applied": applied,
        "policy_version_included": policy.version_id,
        "policy_matches": applied == policy.version_id,
        "checkpoints": anchored.model_dump(mode="json"),
    }
    (out / "verification.json").write_text(json.dumps(verification, indent=2) + "\n")

    summary = {
        "chain_ok": chain.ok,
        "events_ok": events_ok,
        "replay_ok": replay_error is None,
        "signatures": len(signatures),
        "signatures_valid": sum(1 for s in signatures if s.get("valid")),
        "policy_matches": applied == policy.version_id,
        "events_anchored": anchored.ok,
    }
    readme = README.format(
        proposal_id=proposal_id,
        created_at=created,
        policy_included=policy.version_id,
        policy_applied=applied or "an unrecorded version",
        summary=json.dumps(summary),
    )
    (out / "README.md").write_text(readme)

    names = [
        "history.json",
        "events.jsonl",
        "policy.yaml",
        "signatures.json",
        "verification.json",
        CHECKPOINTS_FILE,
        PUBLIC_KEY_FILE,
        "README.md",
    ]
    files = {n: {"sha256": _sha256(out / n), "bytes": (out / n).stat().st_size} for n in names}
    manifest = {
        "proposal_id": proposal_id,
        "workflow_id": history.workflow_id,
        "created_at": created,
        "files": files,
        "summary": summary,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    files["MANIFEST.json"] = {"sha256": _sha256(out / "MANIFEST.json"), "bytes": 0}
    (out / "SHA256SUMS").write_text("".join(f"{info['sha256']}  {name}\n" for name, info in files.items()))
    return manifest

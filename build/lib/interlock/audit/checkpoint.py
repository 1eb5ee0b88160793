"""Signed checkpoints of the audit chain: Ed25519 over (seq, event id, hash, event count, time) of the
newest row, made by a key the worker holds and the database's owner does not.

A checkpoint is checked with the public key alone: anyone can confirm it, only the worker can make one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from interlock.audit.chain import canonical_at, canonical_json
from interlock.signing import load_private_key, public_key_text

# Signed with the message, so a checkpoint signature can never pass for any other Interlock signature.
CHECKPOINT_TYPE = "interlock.audit.checkpoint/1"
# A key given inline: base64 of 32 bytes. Anything else names a file.
_RAW_KEY = re.compile(r"^[A-Za-z0-9+/]{43}=$")


class Checkpoint(BaseModel):
    """The chain up to row `seq` (whose hash is `hash`), as the worker wrote it at `at`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=1)
    event_id: str = Field(min_length=1, max_length=200)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Rows 1..seq: seq is assigned as last seq + 1, so the count is the seq; signed on its own so a
    # reader counting rows need not trust the numbering.
    events: int = Field(ge=1)
    # The canonical UTC text, exactly as signed.
    at: str = Field(max_length=32)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    signature: str = Field(max_length=128)

    def message(self) -> bytes:
        return signed_message(self.seq, self.event_id, self.hash, self.events, self.at)


def signed_message(seq: int, event_id: str, digest: str, events: int, at: str) -> bytes:
    """The bytes a checkpoint's signature covers: canonical JSON, so a verifier can rebuild them."""
    fields = {"type": CHECKPOINT_TYPE, "seq": seq, "event_id": event_id, "hash": digest, "events": events}
    return canonical_json({**fields, "at": at}).encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoints with the worker's audit key."""

    def __init__(self, key: Ed25519PrivateKey):
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> CheckpointSigner:
        try:
            return cls(load_private_key(path))
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointKeyError(f"audit signing key {path} is unusable: {_why(exc)}") from None

    def sign(self, seq: int, event_id: str, digest: str, at: datetime | None = None) -> Checkpoint:
        at_text = canonical_at(at or datetime.now(UTC))
        signature = self._key.sign(signed_message(seq, event_id, digest, seq, at_text))
        return Checkpoint(
            seq=seq,
            event_id=event_id,
            hash=digest,
            events=seq,
            at=at_text,
            key_id=self.key_id,
            signature=base64.b64encode(signature).decode(),
        )

    def public_key_text(self) -> str:
        return public_key_text(self.public_key)


class CheckpointKeyError(ValueError):
    """A signing or public key cannot be read."""


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key as base64 of its 32 raw bytes (the .pub files Interlock writes) or as PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise CheckpointKeyError("the PEM key is not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointKeyError("not a public key: expected base64 of 32 bytes or a PEM block") from None
    if len(raw) != 32:
        raise CheckpointKeyError(f"not an Ed25519 public key: {len(raw)} bytes, not 32")
    return Ed25519PublicKey.from_public_bytes(raw)


class TrustedKeys:
    """The public keys whose checkpoints verify believes."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]):
        self._by_id = {key_id(k): k for k in keys}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    @property
    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def texts(self) -> list[str]:
        """Each key as base64 of its raw bytes (the .pub form), ordered by key id."""
        return [public_key_text(self._by_id[i]) for i in self.ids]

    @classmethod
    def parse(cls, spec: str) -> TrustedKeys:
        """Comma-separated keys, each base64 text or the path of a .pub or .pem file."""
        keys = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            path = Path(part).expanduser()
            if not _RAW_KEY.match(part):
                try:
                    text = path.read_text()
                except OSError as exc:
                    raise CheckpointKeyError(f"cannot read public key {path}: {_why(exc)}") from None
                try:
                    keys.append(parse_public_key(text))
                except (CheckpointKeyError, ValueError) as exc:
                    raise CheckpointKeyError(f"{path}: {_why(exc)}") from None
            else:
                keys.append(parse_public_key(part))
        return cls(keys)

    def refusal(self, cp: Checkpoint) -> str | None:
        """None when the checkpoint's signature verifies with a trusted key, else why it is refused."""
        key = self._by_id.get(cp.key_id)
        if key is None:
            return f"it is signed with key {cp.key_id}, which is not a trusted audit key"
        try:
            key.verify(base64.b64decode(cp.signature, validate=True), cp.message())
        except (InvalidSignature, binascii.Error, ValueError):
            return (
                f"its signature does not verify with the trusted key {cp.key_id}: Interlock did not make it"
            )
        return None

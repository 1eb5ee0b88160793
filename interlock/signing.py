"""Signed approvals bound to the plan: Ed25519 tokens an approver makes with their own key.

A token is `base64url(claims JSON).base64url(signature)`. Verification is pure (no I/O) so the
workflow's Update validator can run it; key files are read only by the CLI.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from interlock.models import DecisionKind

DEFAULT_TOKEN_LIFETIME = timedelta(minutes=15)
# The longest `expires_at - issued_at` a token may claim (the policy's `token_max_lifetime`).
# The approver signs both times, so without this limit one stolen token, signed with a far
# expiry, would approve that plan for as long as the proposal waits.
DEFAULT_MAX_TOKEN_LIFETIME = timedelta(minutes=15)


class TokenRefused(ValueError):
    """A token failed a check; the message names the check."""


class ApprovalClaims(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    proposal_id: str
    workflow_id: str
    plan_hash: str
    decision: DecisionKind
    approver: str
    reason: str
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key() -> tuple[str, str]:
    """A new key pair as (private key PEM, public key as base64 raw bytes for the policy)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def sign(
    key: Ed25519PrivateKey,
    *,
    proposal_id: str,
    workflow_id: str,
    plan_hash: str,
    decision: DecisionKind,
    approver: str,
    reason: str,
    now: datetime,
    lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
) -> str:
    claims = ApprovalClaims(
        proposal_id=proposal_id,
        workflow_id=workflow_id,
        plan_hash=plan_hash,
        decision=decision,
        approver=approver,
        reason=reason,
        issued_at=now,
        expires_at=now + lifetime,
        nonce=secrets.token_hex(16),
    )
    body = json.dumps(claims.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    payload = _b64(body.encode())
    return f"{payload}.{_b64(key.sign(payload.encode()))}"


def verify(
    token: str,
    *,
    public_keys: dict[str, str | None],
    proposal_id: str,
    workflow_id: str,
    plan_hash: str,
    now: datetime,
    seen_nonces: set[str] | frozenset[str],
    max_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
) -> ApprovalClaims:
    """Every check a token must pass, each refusal naming the check that failed."""
    try:
        payload, signature = token.strip().split(".")
        claims = ApprovalClaims.model_validate_json(_unb64(payload))
    except (ValueError, ValidationError) as exc:
        raise TokenRefused(f"malformed token: {str(exc).splitlines()[0]}") from None
    key_text = public_keys.get(claims.approver)
    if claims.approver not in public_keys:
        raise TokenRefused(f"signature: {claims.approver!r} is not in the roster")
    if not key_text:
        raise TokenRefused(f"signature: {claims.approver!r} has no public key in the policy")
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_text)).verify(
            _unb64(signature), payload.encode()
        )
    except (InvalidSignature, ValueError):
        raise TokenRefused(f"signature: not made with {claims.approver}'s key (forged or altered)") from None
    if claims.proposal_id != proposal_id or claims.workflow_id != workflow_id:
        raise TokenRefused(f"binding: token is for proposal {claims.proposal_id!r}, not {proposal_id!r}")
    if claims.plan_hash != plan_hash:
        raise TokenRefused(
            "plan: token approves a different plan (the playbooks, inventory, parameters "
            "or preview changed since it was signed)"
        )
    lifetime = claims.expires_at - claims.issued_at
    if lifetime > max_lifetime:
        raise TokenRefused(
            f"lifetime: token is valid for {describe_lifetime(lifetime)} (issued "
            f"{claims.issued_at.isoformat()}, expires {claims.expires_at.isoformat()}), longer "
            f"than the policy's token_max_lifetime of {describe_lifetime(max_lifetime)}"
        )
    if lifetime <= timedelta(0):
        raise TokenRefused("lifetime: token expires before it was issued")
    if now >= claims.expires_at:
        raise TokenRefused(f"expiry: token expired at {claims.expires_at.isoformat()}")
    if claims.issued_at - now > timedelta(minutes=5):
        raise TokenRefused("expiry: token issued in the future")
    if claims.nonce in seen_nonces:
        raise TokenRefused("nonce: token was already used (replay)")
    return claims


def describe_lifetime(value: timedelta) -> str:
    """'15m', '1h30m', '45s': how the policy writes a duration."""
    seconds = int(value.total_seconds())
    if seconds <= 0 or value.microseconds:
        return f"{value.total_seconds():g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def decode_claims(token: str) -> ApprovalClaims:
    """The claims of a token already verified by the Update validator (no checks here)."""
    payload = token.strip().split(".")[0]
    return ApprovalClaims.model_validate_json(_unb64(payload))

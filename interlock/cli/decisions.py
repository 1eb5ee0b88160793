"""Decisions and keys: `approve`, `reject`, `sign` and `keys` (Ed25519)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from interlock.cli.common import JsonFlag, app, err, fail, out, print_json, run, settings
from interlock.models import DecisionInput
from interlock.policy import PolicyError, load_policy
from interlock.settings import Settings


def _decide(
    decision: str,
    proposal_id: str,
    user: str | None,
    reason: str,
    token: str | None,
    json_out: bool,
) -> None:
    from interlock.keys import key_path
    from interlock.proposals import decide, sign_decision
    from interlock.temporal import connect

    s = settings()
    if not user and not token:
        fail("give --as USER or --token TOKEN", 2)

    async def body() -> None:
        client = await connect(s)
        tok = token
        if tok is None and user and key_path(s.keys_dir, user).exists():
            # Sign with the approver's own key: the approval is bound to this exact plan.
            tok = await sign_decision(
                client, s.keys_dir, proposal_id, decision, user, reason, token_lifetime(s, None)
            )
        inp = DecisionInput(approver=user or "", reason=reason, token=tok)
        result = await decide(client, proposal_id, decision, inp)
        if tok is None and user:
            # Accepted, but unsigned: say why, and how to sign next time (it counts only where
            # the tier accepts unsigned decisions; high and critical need a signature).
            err.print(
                f"note: no private key for {user} at {key_path(s.keys_dir, user)}: this {decision} is "
                f"UNSIGNED. To sign: `interlock keys generate {user}` and put the printed public key "
                "in the policy's roster.",
                markup=False,
            )
        if json_out:
            print_json(result.model_dump(mode="json") | {"signed": tok is not None})
        else:
            how = "signed" if tok else "UNSIGNED"
            out.print(f"{proposal_id}  {decision}d by {result.approver} ({how}); now {result.status.value}")

    run(body)


AsOption = Annotated[str | None, typer.Option("--as", help="Approver (must be in the policy's roster).")]


TokenOption = Annotated[
    str | None, typer.Option("--token", help="A signed token made with `interlock sign`.")
]


@app.command()
def approve(
    proposal_id: str,
    as_: AsOption = None,
    reason: Annotated[str, typer.Option(help="Why you approve.")] = "",
    token: TokenOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Approve a proposal (signed with your key when you have one)."""
    _decide("approve", proposal_id, as_, reason, token, json_out)


@app.command()
def reject(
    proposal_id: str,
    as_: AsOption = None,
    reason: Annotated[str, typer.Option(help="Why you reject (required).")] = "",
    token: TokenOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Reject a proposal that is awaiting approval."""
    _decide("reject", proposal_id, as_, reason, token, json_out)


@app.command()
def sign(
    proposal_id: str,
    as_: Annotated[str, typer.Option("--as", help="Whose key signs.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    decision: Annotated[str, typer.Option(help="approve or reject.")] = "approve",
    lifetime: Annotated[
        str | None,
        typer.Option(
            help="How long the token is valid, e.g. 10m (default and most: the policy's "
            "token_max_lifetime, at most 15m by default)."
        ),
    ] = None,
) -> None:
    """Print a signed token for the Web UI's Update dialog: {"token": "..."}."""
    from interlock.proposals import sign_decision
    from interlock.temporal import connect

    if decision not in ("approve", "reject"):
        fail("--decision must be approve or reject", 2)
    s = settings()
    valid_for = token_lifetime(s, lifetime)

    async def body() -> None:
        client = await connect(s)
        tok = await sign_decision(client, s.keys_dir, proposal_id, decision, as_, reason, valid_for)
        print_json({"token": tok})

    run(body)


def token_lifetime(s: Settings, requested: str | None) -> timedelta:
    """How long a token made here is valid: `requested`, refused when longer than the policy's
    `token_max_lifetime` (the validator would refuse the token); by default the shorter of 15
    minutes and that limit."""
    from interlock.policy import parse_duration
    from interlock.signing import DEFAULT_TOKEN_LIFETIME, describe_lifetime

    try:
        limit = load_policy(s.effective_policy_file).token_max_lifetime
    except PolicyError as exc:
        fail(str(exc), 2)
    if requested is None:
        return min(DEFAULT_TOKEN_LIFETIME, limit)
    try:
        wanted = parse_duration(requested)
    except ValueError as exc:
        fail(f"--lifetime: {exc}", 2)
    if wanted > limit:
        fail(
            f"--lifetime {requested} is longer than the policy's token_max_lifetime of "
            f"{describe_lifetime(limit)}: the approval would be refused (lifetime check)",
            2,
        )
    return wanted


keys_app = typer.Typer(help="Approver signing keys (Ed25519).")
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(user: str) -> None:
    """Make USER's key pair under the state folder and print the public key for the policy."""
    from interlock.keys import write_key

    s = settings()
    public = write_key(s.keys_dir, user)
    out.print(f"private key: {s.keys_dir / (user + '.key')} (keep it on the approver's machine)")
    out.print(f'policy roster entry:  {user}: {{groups: [...], public_key: "{public}"}}')


@keys_app.command("audit")
def keys_audit(path: Annotated[Path, typer.Argument(help="Where to write the private key (0600).")]) -> None:
    """Make the workers' audit checkpoint signing key (and PATH.pub), unless PATH exists.

    Give every worker the same key (INTERLOCK_AUDIT_SIGNING_KEY) and keep it off the database
    host; auditors verify with the .pub alone (`interlock audit verify --public-key`)."""
    from interlock.keys import ensure_audit_signing_key

    made = ensure_audit_signing_key(path)
    out.print(f"{'made' if made else 'kept the existing'} {path}; public key {path}.pub", markup=False)

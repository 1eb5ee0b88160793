"""`interlock policy`: check a governance policy file."""

from __future__ import annotations

from pathlib import Path

import typer

from interlock.cli.common import JsonFlag, app, err, out, print_json
from interlock.policy import PolicyError, load_policy

policy_app = typer.Typer(help="The governance policy file.")
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(file: Path, json_out: JsonFlag = False) -> None:
    """Validate a policy file; every error is reported with its path. Exit 2 if invalid."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        if json_out:
            print_json({"valid": False, "errors": exc.errors})
        else:
            for line in exc.errors:
                err.print(f"error: {file}: {line}", markup=False)
        raise typer.Exit(2) from None
    warnings = policy.warnings()
    if json_out:
        print_json({"valid": True, "version": policy.version_id, "warnings": warnings})
    else:
        for line in warnings:
            err.print(f"warning: {file}: {line}", markup=False)
        out.print(f"{file}: valid (version {policy.version_id})")

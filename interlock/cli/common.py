"""What every command shares: the Typer app, consoles, one-line errors and the async runner."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from interlock.dedup import DedupUnsettled
from interlock.policy import PolicyError
from interlock.proposals import (
    DecisionRefused,
    ProposalConflict,
    ProposalInvalid,
    ProposalNotFound,
)
from interlock.settings import Settings
from interlock.temporal import TemporalUnavailable

app = typer.Typer(
    name="interlock",
    help="Human-in-the-loop remediation approval engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(highlight=False, soft_wrap=True)

err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]

T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def settings() -> Settings:
    from interlock.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body, turning known failures into one-line errors."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except ProposalInvalid as exc:
        for line in exc.errors:
            err.print(f"error: {line}", markup=False)
        raise typer.Exit(2) from None
    except (ProposalConflict, DecisionRefused, UsageError) as exc:
        fail(str(exc), 2)
    except PolicyError as exc:
        fail(str(exc), 2)
    except ProposalNotFound as exc:
        fail(str(exc), 1)
    except TemporalUnavailable as exc:
        fail(str(exc), 3)
    except TimeoutError as exc:
        fail(str(exc) or "timed out", 1)
    except DedupUnsettled as exc:
        fail(f"{exc}; retry", 1)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")

"""`interlock config show`: the effective settings, where each came from, secrets masked."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from pydantic_settings import BaseSettings
from rich.console import Console
from rich.table import Table

from interlock.api.settings import ApiSettings
from interlock.settings import Settings, SettingsError, env_name, load

config_app = typer.Typer(help="Interlock's settings (environment variables).", no_args_is_help=True)
MASK = "****"


def masked(field: str, value: Any) -> Any:
    """A setting as it may be shown: no API key, no database password, no key material."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        if field == "database_url" and secret:
            from sqlalchemy.engine import make_url

            return make_url(secret).render_as_string(hide_password=True)
        return MASK if secret else ""
    if isinstance(value, Path):
        return str(value)  # paths only; a key file's content is never read here
    return value


def effective(models: tuple[BaseSettings, ...]) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        cls = type(model)
        for field, info in cls.model_fields.items():
            variable = env_name(cls, field)
            rows.append(
                {
                    "variable": variable,
                    "value": masked(field, getattr(model, field)),
                    "source": "environment" if variable in os.environ else "default",
                    "description": info.description or "",
                }
            )
    return rows


@config_app.command("show")
def show(json_out: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False) -> None:
    """Print every setting's effective value and whether it came from the environment."""
    try:
        models = (load(Settings), load(ApiSettings))
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = effective(models)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table("variable", "value", "source", "meaning")
    for row in rows:
        value = "" if row["value"] is None else str(row["value"])
        table.add_row(row["variable"], value, row["source"], row["description"])
    Console(highlight=False, soft_wrap=True).print(table)

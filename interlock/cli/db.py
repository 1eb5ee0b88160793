"""`interlock db migrate`: create or upgrade Interlock's tables, run once as the database owner.

Workers and the API connect as a role that may not create tables (and may not change audit rows),
so the schema is set up by this one-shot command before they start.
"""

from __future__ import annotations

import typer

from interlock.settings import SettingsError, load_settings

db_app = typer.Typer(help="Interlock's database (audit store and pauses).", no_args_is_help=True)


@db_app.command("migrate")
def migrate() -> None:
    """Create or upgrade the audit and pauses tables at INTERLOCK_DATABASE_URL."""
    from sqlalchemy.exc import SQLAlchemyError

    from interlock.audit import open_store, store_url
    from interlock.pauses import PauseStore, database_url

    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        open_store(settings).close()
        PauseStore(database_url(settings)).engine.dispose()
    except SQLAlchemyError as exc:
        typer.echo(f"error: migration failed: {type(exc).__name__}: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    from sqlalchemy.engine import make_url

    typer.echo(f"migrated {make_url(store_url(settings)).render_as_string(hide_password=True)}")

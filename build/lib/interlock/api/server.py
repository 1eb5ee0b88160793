"""Running the intake under uvicorn, inside `interlock up` or alone as `interlock api`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from interlock.api.app import create_app
from interlock.api.settings import ApiSettings
from interlock.settings import Settings

log = logging.getLogger(__name__)


class ApiServeError(RuntimeError):
    """The intake could not start (most often: the port is taken)."""


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Whoever runs us owns the signals (`interlock up` stops its whole stack on Ctrl-C);
        # uvicorn would replace their handlers. Cancelling `serve` shuts down gracefully.
        yield


async def serve(
    settings: Settings, api_settings: ApiSettings | None = None, *, app: FastAPI | None = None
) -> None:
    """Serve the intake until cancelled; cancellation drains open requests first."""
    api_settings = api_settings or ApiSettings()
    config = uvicorn.Config(
        app or create_app(settings, api_settings=api_settings),
        host=api_settings.host,
        port=api_settings.port,
        log_config=None,  # keep the process's logging setup
        log_level=settings.log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = _EmbeddedServer(config)
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot bind; inside `interlock up` that must be
        # an error the stack can report instead.
        raise ApiServeError(
            f"the intake could not listen on {api_settings.host}:{api_settings.port}"
        ) from None
    except asyncio.CancelledError:
        if server.started:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await server.shutdown()
        raise


async def _serve_until_signalled(settings: Settings, api_settings: ApiSettings) -> None:
    """Serve until SIGINT or SIGTERM (a service manager's stop), then drain and return."""
    serving = asyncio.create_task(serve(settings, api_settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    log.info("intake stopped")


def api_command(
    port: Annotated[
        int | None,
        typer.Option("--api-port", help="Port to listen on (default: INTERLOCK_API_PORT, else 8080)."),
    ] = None,
) -> None:
    """Run only the HTTP intake for recommenders against TEMPORAL_ADDRESS."""
    from pydantic import ValidationError

    try:
        settings = Settings()
        api_settings = ApiSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"error: invalid setting: {problems}", err=True)
        raise typer.Exit(2) from None
    if port is not None:
        api_settings = api_settings.model_copy(update={"port": port})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("intake listening on http://%s:%d", api_settings.host, api_settings.port)
    try:
        asyncio.run(_serve_until_signalled(settings, api_settings))
    except ApiServeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass

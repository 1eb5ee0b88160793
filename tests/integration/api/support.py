"""Running the real intake on a free localhost port, and a TCP relay that stands in for Temporal
coming back: what the intake tests share."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from interlock.api import ApiSettings, create_app, serve
from interlock.api.connection import ClientFactory
from interlock.examples import example_proposal
from interlock.settings import Settings
from interlock.tokens import TokenStore, intake_db_path
from tests.conftest import cli_env
from tests.support import new_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def intake_settings(settings: Settings, home: Path, task_queue: str, **update: Any) -> Settings:
    """The session's settings with this test's own state folder (intake.db) and task queue."""
    values = settings.model_dump()
    values.update(home=home, task_queue=task_queue, **update)
    return Settings(**values)


def proposal_doc(
    recommender: str = "triage-bot", action: str = "restart_service", **kw: Any
) -> dict[str, Any]:
    # An incident of its own: proposals for one incident would be deduplicated into one.
    kw.setdefault("incident", new_id("INC"))
    return example_proposal(
        action, proposal_id=kw.pop("proposal_id", new_id("api")), recommender=recommender, **kw
    )


@dataclass
class RunningApi:
    url: str
    settings: Settings
    app: FastAPI
    tokens: TokenStore

    def token(self, recommender: str = "triage-bot") -> str:
        return self.tokens.create(recommender)

    def auth(self, recommender: str = "triage-bot") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(recommender)}"}


@asynccontextmanager
async def running_api(
    settings: Settings,
    *,
    rate: str = "1000/second",
    auth_failures: str = "10/minute",
    max_body: int = 65536,
    client_factory: ClientFactory | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[RunningApi]:
    """`serve` in a background task of the test's loop, until the test is done."""
    api_settings = ApiSettings(
        host="127.0.0.1", port=free_port(), rate=rate, auth_failures=auth_failures, max_body=max_body
    )
    app = create_app(settings, client_factory, api_settings=api_settings, tracer_provider=tracer_provider)
    task = asyncio.create_task(serve(settings, api_settings, app=app))
    url = f"http://127.0.0.1:{api_settings.port}"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            if task.done():
                task.result()  # raises why serve stopped
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the intake did not start in 30s")
            await asyncio.sleep(0.05)
    tokens = TokenStore(intake_db_path(settings.home_dir))
    try:
        yield RunningApi(url, settings, app, tokens)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        tokens.engine.dispose()


class TcpRelay:
    """Forwards a localhost port to Temporal: 'Temporal comes up' at an address that was dead."""

    def __init__(self, port: int, target: str):
        self.port = port
        host, _, target_port = target.rpartition(":")
        self.target = (host, int(target_port))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def interlock(api: RunningApi, *args: str, stdin: str = "", **env: str) -> tuple[int, str, str]:
    """The real `interlock` command against the test's stack, run without blocking the loop the
    test's worker runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interlock.cli",
        *args,
        env={**cli_env(api.settings, api.settings.task_queue), **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()

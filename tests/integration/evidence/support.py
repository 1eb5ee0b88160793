"""Helpers the evidence tests share: a catalog stand-in, free ports and real servers that
come up late or answer as a third-party source would."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from interlock.evidence import Confirmation, check_items
from interlock.models import EvidenceItem
from interlock.policy import load_policy
from interlock.sources import SourceSpec

# A stand-in for the policy's alias -> canonical mapping (the lead passes canonical_service).
ALIASES = {
    "checkout-api": "checkout-api",
    "checkout": "checkout-api",
    "checkout-prod": "checkout-api",
    "inventory-api": "inventory-api",
    "inventory": "inventory-api",
    # Catalogued but not running in the lab: its health endpoint is a 404 there.
    "storefront": "storefront",
}


def normalise(name: str) -> str | None:
    return ALIASES.get(name.strip().lower())


# The default policy's lab source of each kind: the tests ask them about their checks.
LAB_SOURCE = {
    "http-health": "lab-monitor",
    "alertmanager": "lab-alertmanager",
    "prometheus": "lab-prometheus",
    "changes": "interlock-changes",
}


def lab_source(kind: str, base_url: str = "", **changes: Any) -> SourceSpec:
    """The default policy's lab source of `kind`, pointed at `base_url`, with `changes`."""
    raw = load_policy(None).sources[LAB_SOURCE[kind]].model_dump(by_alias=True, exclude_none=True)
    raw["url"] = base_url if kind != "changes" else ""
    raw.update(changes)
    for check in raw.get("checks", {}).values():
        check.pop("type", None)
    return SourceSpec.model_validate(raw)


async def claim(
    http: httpx.AsyncClient,
    kind: str,
    base_url: str,
    ref: str,
    target: str = "checkout-api",
    *,
    spec: SourceSpec | None = None,
    sources: dict[str, SourceSpec] | None = None,
    **kw: Any,
) -> Confirmation:
    """Ask one source (the lab's of `kind` at `base_url`, or `spec`) about `ref`, as the
    checks activity does: through check_items, with its credentials and redaction."""
    kw.setdefault("backoff", 0.05)
    name = LAB_SOURCE[kind]
    now = kw.pop("now", datetime.now(UTC))
    item = EvidenceItem(source=name, ref=ref, observed_at=now)
    catalog = {name: spec or lab_source(kind, base_url), **(sources or {})}
    [result] = await check_items(
        [item],
        sources=catalog,
        target_service=target,
        normalise=normalise,
        http_for=lambda _: http,
        max_age=kw.pop("max_age", timedelta(minutes=30)),
        now=now,
        **kw,
    )
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LateServer:
    """A real HTTP server on `port` that starts `delay` seconds after `start_later()`."""

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.port = port
        self.handler = handler
        self.server: ThreadingHTTPServer | None = None
        self.started_at: float | None = None
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None

    def start_later(self, delay: float) -> None:
        if self._timer is None:
            self._timer = threading.Timer(delay, self._serve)
            self._timer.start()

    def serve_now(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.started_at = time.monotonic()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self._thread is not None:
            self._thread.join()


class StartOnFirstFailure(logging.Handler):
    """Starts a LateServer once the connector logs its first failed attempt, so the source
    is provably down for that attempt however slow this machine is."""

    def __init__(self, server: LateServer, delay: float) -> None:
        super().__init__(level=logging.WARNING)
        self.server = server
        self.delay = delay
        self.failed_attempts = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "failed attempt" in record.getMessage():
            self.failed_attempts += 1
            self.server.start_later(self.delay)


def fixed_json_handler(routes: dict[str, tuple[int, Any]]) -> type[BaseHTTPRequestHandler]:
    """A handler answering GET <path> with a fixed (status, JSON body), whatever the query."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            status, body = routes.get(path, (404, {"error": f"no route {path}"}))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler

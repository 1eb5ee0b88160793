"""A tiny stdlib HTTP client for talking to lab processes on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from typing import Any

# An empty ProxyHandler: an http_proxy in the environment must not capture loopback calls.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request_json(url: str, method: str = "GET", timeout: float = 1.0) -> tuple[int, Any] | None:
    """Return (status, parsed body) for any HTTP answer, or None if nothing answered."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return resp.status, _parse(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, _parse(err.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


class LabHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with a listen backlog fit for bursts of checks.

    The standard library listens with a backlog of 5: a burst of concurrent evidence checks then
    overflows it, the kernel drops SYNs, and clients wait a 1 s retransmission, long enough for
    the monitor's probe to time out and call a busy service down.
    """

    request_queue_size = 256
    daemon_threads = True

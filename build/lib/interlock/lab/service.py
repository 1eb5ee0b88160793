"""A lab service process: a small HTTP app standing in for one deployed service.

Run as ``python -m interlock.lab.service --root ROOT --name NAME [--detach]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from interlock.lab._http import LabHTTPServer
from interlock.lab._layout import LabPaths, append_change, instance, load_config, write_atomic

logger = logging.getLogger("interlock.lab.service")

# A degraded service fails this share of its traffic; 17 of every 50 requests.
DEGRADED_ERROR_RATIO = 0.34


@dataclass
class ServiceState:
    name: str
    version: str
    release_healthy: bool
    pid: int = 0
    degraded: bool = False
    # Present while a dependency of the service fails (`lab degrade --persistent`): the
    # process itself is healthy, but requests fail, and a restart does not help.
    fault_file: Path | None = None
    requests: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failure_reason(self) -> str | None:
        if not self.release_healthy:
            return f"release {self.version} is marked unhealthy"
        if self.degraded:
            return "degraded: elevated error rate"
        return None

    def dependency_failing(self) -> bool:
        return self.fault_file is not None and self.fault_file.exists()

    def erroring(self) -> bool:
        return self.degraded or self.dependency_failing()

    def error_ratio(self) -> float:
        if not self.release_healthy:
            return 1.0
        return DEGRADED_ERROR_RATIO if self.erroring() else 0.0

    def serve_traffic(self) -> bool:
        """Count one request and decide, deterministically, whether it fails."""
        with self.lock:
            n = self.requests
            self.requests += 1
            failed = not self.release_healthy or (self.erroring() and n % 50 < 17)
            if failed:
                self.errors += 1
            return not failed


def make_handler(state: ServiceState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "interlock-lab-service/1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            base = {"service": state.name, "version": state.version, "pid": state.pid}
            if path == "/health":
                reason = state.failure_reason()
                if reason is None:
                    self._send(200, {**base, "status": "ok"})
                else:
                    self._send(503, {**base, "status": "failing", "reason": reason})
            elif path == "/":
                ok = state.serve_traffic()
                self._send(200 if ok else 500, {**base, "ok": ok})
            elif path == "/stats":
                with state.lock:
                    counts = {"requests": state.requests, "errors": state.errors}
                self._send(
                    200,
                    {
                        **counts,
                        "error_ratio": state.error_ratio(),
                        "degraded": state.erroring(),
                        "dependency_failing": state.dependency_failing(),
                        "version": state.version,
                        "pid": state.pid,
                    },
                )
            else:
                self._send(404, {"error": f"no route {path}"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path != "/admin/degrade":
                self._send(404, {"error": f"no route {path}"})
            elif self.client_address[0] != "127.0.0.1":
                self._send(403, {"error": "admin endpoints answer loopback only"})
            else:
                state.degraded = True
                logger.info("degraded on request")
                self._send(200, {"service": state.name, "degraded": True})

    return Handler


def _raise_exit(signum: int, frame: object) -> NoReturn:
    # Raising out of serve_forever() is the simplest clean stop for a single-purpose process.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interlock.lab.service")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", help="the fleet host this process stands for")
    parser.add_argument("--detach", action="store_true", help="fork into the background")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s {args.name} %(levelname)s %(message)s",
    )

    paths = LabPaths(args.root)
    svc = load_config(args.root)["services"][args.name]
    port = int(svc["hosts"][args.host]["port"] if args.host else svc["port"])
    me = instance(args.name, args.host)
    # The release is read once, at start: a new `current` takes effect on restart only.
    release = json.loads((paths.service_dir(args.name) / "current" / "release.json").read_text())
    healthy = bool(release["healthy"])
    broken = paths.restart_fault_file(me)
    if broken.exists():
        # `lab degrade --after-restart`: this start comes up failing, the next one is fine.
        broken.unlink(missing_ok=True)
        healthy = False
    state = ServiceState(args.name, release["version"], healthy, fault_file=paths.fault_file(args.name))

    # Bind before detaching so a busy port fails the launcher, not a background child.
    try:
        server = LabHTTPServer(("127.0.0.1", port), make_handler(state))
    except OSError as err:
        logger.error("cannot listen on 127.0.0.1:%d: %s", port, err)
        return 1
    if args.detach and os.fork() > 0:
        os._exit(0)

    state.pid = os.getpid()
    signal.signal(signal.SIGTERM, _raise_exit)
    pid_file = paths.pid_file(me)
    write_atomic(pid_file, f"{state.pid}\n")
    append_change(
        args.root,
        {"event": "started", "service": args.name, "pid": state.pid, "version": state.version}
        | ({"host": args.host} if args.host else {}),
    )
    logger.info("serving %s on 127.0.0.1:%d as pid %d", state.version, port, state.pid)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        # A newer instance may already own the pid file; only remove our own.
        if pid_file.exists() and pid_file.read_text().strip() == str(state.pid):
            pid_file.unlink()
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

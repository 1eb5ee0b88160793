"""The lab monitor: Alertmanager- and Prometheus-shaped HTTP APIs over the lab services
(with Alertmanager's silences, not its inhibitions), and a text-format ``/metrics`` a real
Prometheus can scrape.

Evidence connectors call it exactly as they would call a real Alertmanager (API v2)
or Prometheus (HTTP API v1). Run as ``python -m interlock.lab.monitor --root ROOT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NoReturn, cast
from urllib.parse import parse_qs, quote, urlsplit

from interlock.lab._http import LabHTTPServer, request_json
from interlock.lab._layout import LabPaths, load_config, write_atomic

logger = logging.getLogger("interlock.lab.monitor")

ERROR_RATIO_THRESHOLD = 0.05
# Alertmanager reports endsAt as "now + resolve timeout" while an alert keeps firing.
RESOLVE_TIMEOUT = timedelta(minutes=5)

_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"{}=!~]*))\s*'
)
_QUERY = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*")
METRICS = ("error_ratio", "up")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def parse_matchers(text: str) -> list[Matcher]:
    """Parse ``a="b"`` or ``{a="b", c!~"d.*"}``, the syntax both Alertmanager and PromQL use."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"bad matcher format: {text}")
        raw = m.group(3) if m.group(3) is not None else m.group(4)
        value = re.sub(r"\\(.)", r"\1", raw)
        if m.group(2) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"bad regexp in matcher {text}: {err}") from err
        matchers.append(Matcher(m.group(1), m.group(2), value))
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError(f"bad matcher format: {text}")
            pos += 1
    if not matchers and text.strip() not in ("", "{}"):
        raise ValueError(f"bad matcher format: {text}")
    return matchers


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' label-set fingerprint: FNV-1a 64 over sorted name/value pairs."""
    h = 14695981039346656037
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Probe:
    """One look at a service: whether it answered and what its /stats said."""

    name: str
    port: int
    up: bool
    stats: dict[str, Any]


@dataclass(frozen=True)
class Silence:
    """An Alertmanager silence as the lab keeps it: equality/regex matchers and a time window."""

    id: str
    matchers: tuple[Matcher, ...]
    starts: datetime
    ends: datetime
    created_by: str
    comment: str

    def mutes(self, labels: dict[str, str], now: datetime) -> bool:
        return self.starts <= now < self.ends and all(m.matches(labels) for m in self.matchers)


def parse_silence(body: Any, now: datetime) -> Silence:
    """A POST /api/v2/silences body (Alertmanager's postableSilence); raises ValueError."""
    if not isinstance(body, dict) or not isinstance(body.get("matchers"), list) or not body["matchers"]:
        raise ValueError("silence needs at least one matcher")
    matchers = []
    for m in body["matchers"]:
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("name", "value")):
            raise ValueError("each matcher needs a name and a value")
        regex, equal = bool(m.get("isRegex")), m.get("isEqual", True) is not False
        op = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
        matchers.append(Matcher(m["name"], op, m["value"]))
    try:
        starts = datetime.fromisoformat(str(body.get("startsAt") or now.isoformat()))
        ends = datetime.fromisoformat(str(body["endsAt"]))
    except (KeyError, ValueError) as err:
        raise ValueError(f"silence needs startsAt and endsAt as RFC 3339 times: {err}") from err
    if ends <= starts:
        raise ValueError("end time must not be before start time")
    return Silence(
        id=str(body.get("id") or uuid.uuid4()),
        matchers=tuple(matchers),
        starts=starts,
        ends=ends,
        created_by=str(body.get("createdBy") or ""),
        comment=str(body.get("comment") or ""),
    )


class Monitor:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._first_seen: dict[str, datetime] = {}
        self._silences: dict[str, Silence] = {}
        self._lock = threading.Lock()

    def silence(self, silence: Silence) -> str:
        with self._lock:
            self._silences[silence.id] = silence
        return silence.id

    def expire(self, silence_id: str) -> bool:
        """Ends the silence now (as Alertmanager's DELETE does); False if there is none."""
        with self._lock:
            found = self._silences.get(silence_id)
            if found is None:
                return False
            now = datetime.now(UTC)
            self._silences[silence_id] = Silence(
                found.id, found.matchers, found.starts, min(found.ends, now), found.created_by, found.comment
            )
            return True

    def services(self) -> dict[str, int]:
        config = load_config(self.root)
        return {name: int(svc["port"]) for name, svc in config["services"].items()}

    def probe(self) -> list[Probe]:
        probes = []
        for name, port in self.services().items():
            answer = request_json(f"http://127.0.0.1:{port}/stats", timeout=1.0)
            stats = answer[1] if answer and answer[0] == 200 and isinstance(answer[1], dict) else {}
            probes.append(Probe(name, port, answer is not None, stats))
        return probes

    def alerts(self, base_url: str) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        firing: list[tuple[dict[str, str], str, str]] = []
        for p in self.probe():
            labels = {"service": p.name, "severity": "critical", "environment": "lab"}
            if not p.up:
                firing.append(
                    (
                        {"alertname": "ServiceDown", **labels},
                        f"{p.name} is not answering on 127.0.0.1:{p.port}",
                        f'up{{service="{p.name}"}} == 0',
                    )
                )
            elif float(p.stats.get("error_ratio", 0.0)) > ERROR_RATIO_THRESHOLD:
                ratio = float(p.stats["error_ratio"])
                firing.append(
                    (
                        {"alertname": "HighErrorRate", **labels},
                        f"{p.name} fails {ratio:.0%} of requests (threshold "
                        f"{ERROR_RATIO_THRESHOLD:.0%}) on version {p.stats.get('version')}",
                        f'error_ratio{{service="{p.name}"}} > {ERROR_RATIO_THRESHOLD}',
                    )
                )
        alerts = []
        with self._lock:
            current = {fingerprint(labels) for labels, _, _ in firing}
            # Forget resolved alerts so a recurrence gets a fresh startsAt.
            for fp in set(self._first_seen) - current:
                del self._first_seen[fp]
            for labels, summary, expr in firing:
                fp = fingerprint(labels)
                starts = self._first_seen.setdefault(fp, now)
                silenced = sorted(s.id for s in self._silences.values() if s.mutes(labels, now))
                alerts.append(
                    {
                        "labels": labels,
                        "annotations": {"summary": summary},
                        "startsAt": rfc3339(starts),
                        "endsAt": rfc3339(now + RESOLVE_TIMEOUT),
                        "updatedAt": rfc3339(now),
                        "generatorURL": f"{base_url}/graph?g0.expr={quote(expr)}&g0.tab=1",
                        "fingerprint": fp,
                        "status": {
                            "state": "suppressed" if silenced else "active",
                            "silencedBy": silenced,
                            "inhibitedBy": [],
                        },
                        "receivers": [{"name": "interlock"}],
                    }
                )
        return alerts

    def samples(self, metric: str) -> list[dict[str, Any]]:
        ts = round(time.time(), 3)
        result = []
        for p in self.probe():
            if metric == "up":
                value: float | None = 1.0 if p.up else 0.0
            else:
                # Like Prometheus, a target that cannot be scraped has no error_ratio sample.
                value = float(p.stats["error_ratio"]) if "error_ratio" in p.stats else None
            if value is not None:
                labels = {
                    "__name__": metric,
                    "service": p.name,
                    "instance": f"127.0.0.1:{p.port}",
                    "job": "lab",
                }
                result.append({"metric": labels, "value": [ts, format(value, "g")]})
        return result


def exposition(probes: list[Probe]) -> str:
    """The lab's services in Prometheus' text format (0.0.4). `up` is Prometheus' own name
    for a scrape's health, so a service's is `lab_service_up`."""

    def label(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines = [
        "# HELP error_ratio Share of the service's recent requests that failed.",
        "# TYPE error_ratio gauge",
    ]
    lines += [
        f'error_ratio{{service="{label(p.name)}"}} {float(p.stats["error_ratio"]):g}'
        for p in probes
        if p.up and "error_ratio" in p.stats
    ]
    lines += [
        "# HELP lab_service_up Whether the service answered the monitor (1) or not (0).",
        "# TYPE lab_service_up gauge",
    ]
    lines += [f'lab_service_up{{service="{label(p.name)}"}} {int(p.up)}' for p in probes]
    return "\n".join(lines) + "\n"


def make_handler(monitor: Monitor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "interlock-lab-monitor/1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _base_url(self) -> str:
            address = cast(tuple[str, int], self.server.server_address)
            return f"http://127.0.0.1:{address[1]}"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = parse_qs(url.query, keep_blank_values=True)
            routes: dict[str, Callable[[dict[str, list[str]]], None]] = {
                "/api/v2/alerts": self._alerts,
                "/api/v1/query": self._query,
                "/-/healthy": lambda _: self._send(200, b"OK\n", "text/plain"),
                "/metrics": lambda _: self._send(
                    200,
                    exposition(monitor.probe()).encode(),
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
            }
            if url.path in routes:
                routes[url.path](params)
            elif url.path.startswith("/health/"):
                self._health(url.path.removeprefix("/health/"))
            else:
                self._send(404, b"404 page not found\n", "text/plain")

        def do_POST(self) -> None:
            # Prometheus accepts queries as a form-encoded POST body too.
            url = urlsplit(self.path)
            if url.path == "/api/v2/silences":
                self._post_silence()
                return
            if url.path != "/api/v1/query":
                self._send(405, b"method not allowed\n", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            self._query({**parse_qs(url.query), **form})

        def do_DELETE(self) -> None:
            url = urlsplit(self.path)
            silence_id = url.path.removeprefix("/api/v2/silence/")
            if silence_id == url.path or not monitor.expire(silence_id):
                self._send(404, b"silence not found\n", "text/plain")
            else:
                self._send(200, b"", "application/json")

        def _post_silence(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                silence = parse_silence(json.loads(self.rfile.read(length) or b"null"), datetime.now(UTC))
            except (ValueError, json.JSONDecodeError) as err:
                self._send(400, str(err))
                return
            self._send(200, {"silenceID": monitor.silence(silence)})

        def _alerts(self, params: dict[str, list[str]]) -> None:
            try:
                matchers = [m for f in params.get("filter", []) for m in parse_matchers(f)]
            except ValueError as err:
                self._send(400, str(err))
                return
            alerts = monitor.alerts(self._base_url())

            # Alertmanager's filters: active (default true), silenced (default true); the lab
            # never inhibits, so `inhibited` changes nothing.
            def wanted(name: str) -> bool:
                return params.get(name, ["true"])[-1].lower() != "false"

            alerts = [
                a
                for a in alerts
                if (wanted("active") if a["status"]["state"] == "active" else wanted("silenced"))
            ]
            self._send(200, [a for a in alerts if all(m.matches(a["labels"]) for m in matchers)])

        def _query(self, params: dict[str, list[str]]) -> None:
            query = params.get("query", [""])[-1]
            m = _QUERY.fullmatch(query)
            try:
                if not query.strip():
                    raise ValueError('invalid parameter "query": no query given')
                if m is None or m.group(1) not in METRICS:
                    raise ValueError(
                        f"unsupported query {query!r}: the lab serves "
                        f"{' and '.join(METRICS)} with optional label matchers"
                    )
                matchers = parse_matchers(m.group(2) or "")
            except ValueError as err:
                self._send(400, {"status": "error", "errorType": "bad_data", "error": str(err)})
                return
            result = [
                s for s in monitor.samples(m.group(1)) if all(mt.matches(s["metric"]) for mt in matchers)
            ]
            self._send(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

        def _health(self, name: str) -> None:
            port = monitor.services().get(name)
            if port is None:
                self._send(404, {"service": name, "status": "unknown service"})
                return
            answer = request_json(f"http://127.0.0.1:{port}/health", timeout=2.0)
            if answer is None:
                self._send(503, {"service": name, "status": "down"})
            else:
                self._send(answer[0], answer[1])

    return Handler


def _raise_exit(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interlock.lab.monitor")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--detach", action="store_true", help="fork into the background")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s monitor %(levelname)s %(message)s",
    )
    paths = LabPaths(args.root)
    port = int(load_config(args.root)["monitor_port"])
    try:
        server = LabHTTPServer(("127.0.0.1", port), make_handler(Monitor(args.root)))
    except OSError as err:
        logger.error("cannot listen on 127.0.0.1:%d: %s", port, err)
        return 1
    if args.detach and os.fork() > 0:
        os._exit(0)

    signal.signal(signal.SIGTERM, _raise_exit)
    pid_file = paths.pid_file("monitor")
    write_atomic(pid_file, f"{os.getpid()}\n")
    logger.info("monitoring on 127.0.0.1:%d as pid %d", port, os.getpid())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

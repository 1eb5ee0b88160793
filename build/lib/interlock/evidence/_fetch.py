"""Asking an evidence source: a timeout per request, retries with exponential backoff over
every URL of a cluster, and trimming the answer to what an audit record should keep."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

logger = logging.getLogger("interlock.evidence")

REQUEST_TIMEOUT = 2.0
# How much of a source's answer is kept in `observed`: enough to audit, not a data dump.
MAX_ITEMS = 5
MAX_KEYS = 20
MAX_TEXT = 300
MAX_DEPTH = 4

T = TypeVar("T")


class Retryable(Exception):
    """One attempt failed in a way another attempt may not (refused, timed out, 5xx)."""


class SourceUnavailable(Exception):
    """Every attempt failed: the source said nothing, so nothing can be confirmed."""

    def __init__(self, reason: str, attempts: int, url: str = "") -> None:
        super().__init__(reason)
        self.attempts = attempts
        self.url = url


async def with_retries(
    what: str, attempt: Callable[[], Awaitable[T]], *, retries: int, backoff: float
) -> tuple[T, int]:
    """Run `attempt` up to `retries` times in all, sleeping backoff, 2*backoff, ... between.

    Returns the result and the number of attempts it took; raises SourceUnavailable.
    """
    attempts = max(1, retries)
    last = ""
    for n in range(1, attempts + 1):
        try:
            return await attempt(), n
        except Retryable as err:
            last = str(err)
        if n < attempts:
            delay = backoff * 2 ** (n - 1)
            logger.warning(
                "evidence source %s failed attempt %d of %d (%s); retrying in %.2fs",
                what,
                n,
                attempts,
                last,
                delay,
                extra={"source_url": what, "attempt": n, "attempts": attempts},
            )
            await asyncio.sleep(delay)
    logger.warning(
        "evidence source %s unreachable after %d attempts: %s",
        what,
        attempts,
        last,
        extra={"source_url": what, "attempts": attempts},
    )
    noun = "attempt" if attempts == 1 else "attempts"
    raise SourceUnavailable(f"source unreachable after {attempts} {noun}: {last}", attempts, what)


@dataclass(frozen=True)
class Endpoint:
    """One source as a connector reaches it: its base URLs (several for a cluster; any that
    answers will do), the credentials to send and the client (with its TLS settings)."""

    http: httpx.AsyncClient | None
    bases: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    timeout: float = REQUEST_TIMEOUT
    service_label: str = "service"


class CertificateError(SourceUnavailable):
    """The source's certificate was refused: retrying will not change it."""


async def get(
    endpoint: Endpoint,
    path: str,
    *,
    params: Sequence[tuple[str, str]] | None = None,
    retries: int,
    backoff: float,
    retry_server_errors: bool,
) -> tuple[httpx.Response, int, str]:
    """GET `path` on the first base URL that answers, with a timeout per attempt.

    Each round tries every base once; returns the response, the attempts made and the URL
    that answered. A 5xx is retried only where it means the source is sick; for a health
    endpoint a 503 *is* the answer. A certificate error is not retried."""
    assert endpoint.http is not None, "a source asked over HTTP needs a client"
    rounds = max(1, retries)
    failures: list[str] = []
    attempts = 0
    for n in range(1, rounds + 1):
        for base in endpoint.bases:
            url = base + path
            # With one URL the reason needs no address; in a cluster it says which failed.
            where = f"{base}: " if len(endpoint.bases) > 1 else ""
            attempts += 1
            try:
                response = await endpoint.http.get(
                    url,
                    params=tuple(params) if params else None,
                    headers=dict(endpoint.headers),
                    auth=endpoint.auth or httpx.USE_CLIENT_DEFAULT,
                    timeout=endpoint.timeout,
                )
            except httpx.TransportError as err:
                if (tls := _certificate_problem(err)) is not None:
                    raise CertificateError(f"certificate error from {base}: {tls}", attempts, url) from err
                failures.append(where + describe(err, endpoint.timeout))
                continue
            if retry_server_errors and response.status_code >= 500:
                said = error_text(response)
                failures.append(where + f"HTTP {response.status_code}" + (f": {said}" if said else ""))
                continue
            return response, attempts, url
        last = failures[-len(endpoint.bases) :]
        if n < rounds:
            delay = backoff * 2 ** (n - 1)
            logger.warning(
                "evidence source %s failed attempt %d of %d (%s); retrying in %.2fs",
                path if len(endpoint.bases) > 1 else endpoint.bases[0] + path,
                n,
                rounds,
                "; ".join(last),
                delay,
                extra={"source_path": path, "attempt": n, "attempts": rounds},
            )
            await asyncio.sleep(delay)
    last = failures[-len(endpoint.bases) :]
    noun = "attempt" if attempts == 1 else "attempts"
    logger.warning("evidence source unreachable after %d %s: %s", attempts, noun, "; ".join(last))
    raise SourceUnavailable(
        f"source unreachable after {attempts} {noun}: {'; '.join(last)}",
        attempts,
        endpoint.bases[0] + path,
    )


def _certificate_problem(err: BaseException) -> str | None:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
        if isinstance(cause, ssl.SSLError):
            return cause.reason or str(cause)
        cause = cause.__cause__ or cause.__context__
    return None


def error_text(response: httpx.Response) -> str:
    """What the source said went wrong: Alertmanager's `message` or Prometheus' `error`, or
    the body's text, trimmed."""
    body = json_body(response)
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return trim(body[key])
    text = body if isinstance(body, str) else response.text
    return trim(" ".join(text.split()))


def describe(err: BaseException, timeout: float = REQUEST_TIMEOUT) -> str:
    """A short lower-case account of a transport failure, e.g. 'connection refused'."""
    if isinstance(err, httpx.TimeoutException):
        return f"timed out after {timeout:g}s"
    # httpx wraps the socket error a few levels down ("All connection attempts failed").
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(err)) or type(err).__name__
    return text[:1].lower() + text[1:]


def json_body(response: httpx.Response) -> Any:
    """The parsed JSON body, or the text when the source did not answer JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


def response_time(response: httpx.Response) -> datetime | None:
    """The source's own clock, from its Date header."""
    value = response.headers.get("date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from a datetime or RFC 3339 text (Go's nanoseconds included)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if not isinstance(value, str):
        return None
    # Python 3.11 takes at most microseconds; Alertmanager writes up to nanoseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def clock(moment: datetime, now: datetime) -> str:
    """'10:02:13 UTC' today, with the date otherwise: the form reasons are read in."""
    moment = moment.astimezone(UTC)
    if moment.date() == now.astimezone(UTC).date():
        return moment.strftime("%H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def trim(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of `value` cut to a size fit for an audit record."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."
    if depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(k): trim(v, depth + 1) for k, v in list(value.items())[:MAX_KEYS]}
    if isinstance(value, list | tuple):
        return [trim(v, depth + 1) for v in value[:MAX_ITEMS]]
    return trim(str(value), depth)

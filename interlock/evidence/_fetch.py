"""Asking an evidence source: a 2 s timeout per request, retries with exponential backoff,
and trimming the answer to what an audit record should keep."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
from collections.abc import Awaitable, Callable
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


async def get(
    http: httpx.AsyncClient,
    url: str,
    *,
    params: list[tuple[str, str]] | None = None,
    retries: int,
    backoff: float,
    retry_server_errors: bool,
) -> tuple[httpx.Response, int]:
    """GET with a timeout per attempt. A 5xx is retried only where it means the source is sick;
    for a health endpoint a 503 *is* the answer."""

    async def attempt() -> httpx.Response:
        try:
            response = await http.get(url, params=params, timeout=REQUEST_TIMEOUT)
        except httpx.TransportError as err:
            raise Retryable(describe(err)) from err
        if retry_server_errors and response.status_code >= 500:
            raise Retryable(f"HTTP {response.status_code}")
        return response

    return await with_retries(url, attempt, retries=retries, backoff=backoff)


def describe(err: BaseException) -> str:
    """A short lower-case account of a transport failure, e.g. 'connection refused'."""
    if isinstance(err, httpx.TimeoutException):
        return f"timed out after {REQUEST_TIMEOUT:g}s"
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

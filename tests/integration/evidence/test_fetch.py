from __future__ import annotations

from datetime import UTC, datetime, timedelta

from interlock.evidence._fetch import MAX_ITEMS, MAX_TEXT, clock, parse_time, trim


def test_trim_keeps_an_audit_sized_json_copy() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    big = {"text": "x" * 10_000, "items": list(range(100)), "at": at, "deep": {"a": {"b": {"c": {"d": 1}}}}}
    small = trim(big)
    assert len(small["text"]) == MAX_TEXT and small["text"].endswith("...")
    assert small["items"] == list(range(MAX_ITEMS))
    assert small["at"] == "2026-01-02T03:04:05+00:00"
    assert small["deep"] == {"a": {"b": {"c": "..."}}}


def test_parse_time_takes_go_timestamps_and_refuses_naive_ones() -> None:
    parsed = parse_time("2026-01-02T03:04:05.123456789Z")
    assert parsed == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert parse_time("2026-01-02T03:04:05") is None
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_clock_adds_the_date_only_for_another_day() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert clock(now - timedelta(hours=2), now) == "10:00:00 UTC"
    assert clock(now - timedelta(days=1), now) == "2026-01-01 12:00:00 UTC"

"""Times as the API and the audit log write them: RFC 3339, UTC, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gateway.clock import FrozenClock, SystemClock, rfc3339, rfc3339_micro, utc_naive


def test_api_times_are_whole_seconds_and_none_stays_none() -> None:
    assert rfc3339(datetime(2026, 11, 26, 12, 0, 0)) == "2026-11-26T12:00:00Z"
    assert rfc3339(datetime(2026, 11, 26, 12, 0, 0, 999999)) == "2026-11-26T12:00:00Z"
    assert rfc3339(None) is None


def test_log_times_keep_their_microseconds_only_when_there_are_some() -> None:
    assert rfc3339_micro(datetime(2026, 11, 26, 12, 0, 0)) == "2026-11-26T12:00:00Z"
    assert rfc3339_micro(datetime(2026, 11, 26, 12, 0, 0, 250)) == "2026-11-26T12:00:00.000250Z"


def test_aware_times_are_written_in_utc() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    t = datetime(2026, 11, 26, 17, 30, 0, 7, tzinfo=east)
    assert rfc3339(t) == "2026-11-26T12:00:00Z"
    assert rfc3339_micro(t) == "2026-11-26T12:00:00.000007Z"
    assert utc_naive(t) == datetime(2026, 11, 26, 12, 0, 0, 7)
    assert utc_naive(datetime(2026, 1, 1)) == datetime(2026, 1, 1)


def test_years_have_four_digits() -> None:
    assert rfc3339(datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02T03:04:05Z"
    assert rfc3339_micro(datetime(999, 1, 2, 3, 4, 5, 6)) == "0999-01-02T03:04:05.000006Z"


def test_clocks_give_naive_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is None and now.microsecond == 0
    assert abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)
    clock = FrozenClock(datetime(2026, 1, 1))
    clock.advance(hours=1)
    assert clock.now() == datetime(2026, 1, 1, 1)

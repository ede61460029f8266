"""When credentials fall due for refresh: margin before expiry, halfway for short-lived ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from token_refresher.schedule import refresh_due_at

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MARGIN = timedelta(minutes=15)


def test_long_lived_credentials_refresh_a_margin_before_expiry() -> None:
    assert refresh_due_at(NOW + timedelta(hours=1), issued_at=NOW, margin=MARGIN) == NOW + timedelta(minutes=45)


def test_exactly_twice_the_margin_still_uses_the_margin() -> None:
    assert refresh_due_at(NOW + 2 * MARGIN, issued_at=NOW, margin=MARGIN) == NOW + MARGIN


def test_short_lived_credentials_refresh_halfway() -> None:
    assert refresh_due_at(NOW + timedelta(minutes=20), issued_at=NOW, margin=MARGIN) == NOW + timedelta(minutes=10)
    assert refresh_due_at(NOW + timedelta(seconds=3), issued_at=NOW, margin=MARGIN) == NOW + timedelta(seconds=1.5)


def test_expired_credentials_are_due_at_once() -> None:
    assert refresh_due_at(NOW - timedelta(minutes=1), issued_at=NOW, margin=MARGIN) == NOW


def test_due_times_are_whole_milliseconds_as_stored() -> None:
    # 599.999 s to live: halfway is 299.9995 s, half a millisecond a BSON date would drop.
    issued = NOW + timedelta(milliseconds=1)
    due = refresh_due_at(issued + timedelta(milliseconds=599_999), issued_at=issued, margin=MARGIN)
    assert due == issued + timedelta(milliseconds=299_999)
    assert refresh_due_at(NOW + timedelta(hours=1, microseconds=1500), issued_at=NOW, margin=MARGIN) == NOW + timedelta(
        minutes=45, milliseconds=1
    )

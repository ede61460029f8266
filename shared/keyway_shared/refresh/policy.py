"""When credentials need refreshing (spec §5.6; webhooks-and-refresh §5).

A refresh is due ``margin`` before expiry (15 minutes unless the template says otherwise); tokens
living less than twice the margin are refreshed halfway through their life instead, so a 60-second
token is not refreshed on every read. The due time is stored on the connection (``refresh_due_at``)
and is the one truth the gateway's reads and the background refresher both go by.

Due times are whole milliseconds, the precision a BSON date keeps: the time this module computes is
the time a read gives back, so the scheduler, the refresh service and a test all compare one value
(a halfway point of an odd number of milliseconds used to carry half a millisecond that the stored
copy had lost).

Some providers revoke a refresh token left unused for a while (Microsoft after 90 days of
inactivity); their templates say so (``refresh_token_idle_days``). Such a connection is also due a
keep-alive interval after its credentials were last obtained (authorized, imported or refreshed),
whether it expires sooner or not at all, so a connection nobody reads keeps its grant alive.

Failures back off: transient ones briefly, a refused refresh token once a day, and after four
failing days the connection is left alone until reconnected.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..auth_modes import modes_where
from ..credentials.shapes import CREDENTIAL_SHAPES, Credentials, OAuth2Credentials

__all__ = [
    "DEFAULT_MARGIN",
    "EXHAUSTED_AFTER_DAYS",
    "KEEP_ALIVE_MARGIN",
    "NEVER_REFRESHED",
    "REFRESHABLE_TYPES",
    "is_due",
    "keep_alive_interval",
    "kept_alive",
    "next_refresh_at",
    "refresh_due_at",
    "transient_backoff",
]

DEFAULT_MARGIN = timedelta(minutes=15)
EXHAUSTED_AFTER_DAYS = 4
# How long before a refresh token's idle deadline the keep-alive refresh is due: room for the daily
# retries of a refused refresh (EXHAUSTED_AFTER_DAYS) and for an outage of the refresher or the
# provider, with days to spare. A third of the idle lifetime at most, for providers with short ones.
KEEP_ALIVE_MARGIN = timedelta(days=14)
# Credential types a refresh can renew, as each type says of itself (``refreshable``); API keys, Basic,
# OAuth 1 and NONE never expire by time.
REFRESHABLE_TYPES = frozenset(kind for kind, shape in CREDENTIAL_SHAPES.items() if shape.refreshable)
# Connection auth modes whose credentials are never refreshed (not CUSTOM: its connections hold APP
# or OAUTH2 credentials, which are).
NEVER_REFRESHED = modes_where(lambda facts: facts.never_refreshed)


def refresh_due_at(expires_at: datetime, *, issued_at: datetime, margin: timedelta = DEFAULT_MARGIN) -> datetime:
    """``margin`` before expiry; for credentials living less than twice the margin, halfway through."""
    remaining = expires_at - issued_at
    if remaining < 2 * margin:
        return _stored(issued_at + max(remaining, timedelta(0)) / 2)
    return _stored(expires_at - margin)


def keep_alive_interval(idle_days: int | None) -> timedelta | None:
    """How long after they were obtained credentials whose refresh token dies after ``idle_days``
    unused are refreshed to keep it alive: ``KEEP_ALIVE_MARGIN`` early (76 days for 90); None: never."""
    if idle_days is None or idle_days <= 0:
        return None
    idle = timedelta(days=idle_days)
    return idle - min(KEEP_ALIVE_MARGIN, idle / 3)


def kept_alive(credentials: Credentials) -> bool:
    """Whether a keep-alive refresh can renew these: only an OAuth 2 refresh token idles out, and
    without one a refresh would only fail (and tell the app so) before anything expired."""
    return isinstance(credentials, OAuth2Credentials) and bool(credentials.refresh_token)


def next_refresh_at(
    expires_at: datetime | None,
    *,
    issued_at: datetime,
    margin: timedelta = DEFAULT_MARGIN,
    obtained_at: datetime | None = None,
    keep_alive: timedelta | None = None,
) -> datetime | None:
    """The sooner of the expiry's due time (:func:`refresh_due_at`) and the keep-alive's
    (``keep_alive`` after ``obtained_at``, the last authorization or refresh); None: not due ever."""
    due = refresh_due_at(expires_at, issued_at=issued_at, margin=margin) if expires_at is not None else None
    if keep_alive is not None and obtained_at is not None:
        idle_due = _stored(obtained_at + keep_alive)
        if due is None or idle_due < due:
            due = idle_due
    return due


def _stored(moment: datetime) -> datetime:
    """``moment`` cut to the millisecond, as MongoDB stores it (the driver truncates, so do we)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def is_due(due_at: datetime | None, expires_at: datetime | None, *, now: datetime) -> bool:
    """Whether a read at ``now`` should refresh first: its scheduled time passed, or it expired."""
    if due_at is not None and due_at <= now:
        return True
    return expires_at is not None and expires_at <= now


def transient_backoff(attempt: int, *, retry_after: float | None = None) -> timedelta:
    """10 s, 20 s, 40 s … capped at 10 minutes; a provider's Retry-After wins when longer (≤ 1 h)."""
    delay = min(10.0 * 2 ** max(attempt - 1, 0), 600.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 3600.0))
    return timedelta(seconds=delay)

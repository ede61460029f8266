"""Reading a TWO_STEP answer as the template's ``token_response`` says: the token (a bare answer
only when it looks like one), and when it expires: ``expireAt`` a date (milliseconds or seconds since
1970, ISO, Tableau's ``days:hours:minutes``), ``expireIn`` seconds or a duration as the ``ms`` package
reads it (``1h``), else the template's fixed lifetime, else a JWT's own ``exp``; a JWT refresh token
that expires sooner brings the expiry forward."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from ..providers import ProviderTemplate
from .errors import PermanentTokenError
from .tokens import value_at_path
from .two_step_jwt import jwt_expiry

__all__ = ["expiry", "token_text"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_DURATION_UNITS = {
    "": 1,
    "ms": 1,
    "msec": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "hrs": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
    "y": 31_557_600_000,
    "year": 31_557_600_000,
    "years": 31_557_600_000,
}
_DAY_HOUR_MINUTE = re.compile(r"(\d+):(\d{2}):(\d{2})")
_NOT_A_TOKEN = re.compile(r"[\s<>]")


def _date(value: Any, now: datetime) -> datetime | None:
    """Nango's ``parseTokenExpirationDate``: milliseconds or seconds since 1970, an ISO date, or
    Tableau's ``days:hours:minutes`` from now."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 31_536_000_000 else value  # past 1971 read as milliseconds
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    if match := _DAY_HOUR_MINUTE.fullmatch(value.strip()):
        days, hours, minutes = (int(part) for part in match.groups())
        return now + timedelta(days=days, hours=hours, minutes=minutes)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _duration(value: Any) -> timedelta | None:
    """Seconds (a number), or a duration as the ``ms`` package reads it (``1h``, ``30 days``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    match = _DURATION.fullmatch(value)
    unit = _DURATION_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        return None
    return timedelta(milliseconds=float(match.group(1)) * unit)


def expiry(
    template: ProviderTemplate, raw: Any, token: str, refresh_token: str | None, now: datetime
) -> datetime | None:
    spec = template.token_response
    path = spec.token_expiration if spec is not None else None
    value = value_at_path(raw, path) if path and isinstance(raw, dict) else None
    expires_at: datetime | None = None
    if value not in (None, ""):
        if spec is not None and spec.token_expiration_strategy == "expireIn":  # noqa: S105 - a strategy name
            duration = _duration(value)
            if duration is None:
                raise PermanentTokenError("invalid_token_response", "The token's lifetime is not a duration.")
            expires_at = now + duration
        else:
            expires_at = _date(value, now)
            if expires_at is None:
                raise PermanentTokenError("invalid_token_response", "The token's expiry is not a date.")
    elif template.token_expires_in_ms:
        expires_at = now + timedelta(milliseconds=template.token_expires_in_ms)
    if value in (None, ""):
        own = jwt_expiry(token)
        if own is not None and (expires_at is None or own < expires_at):
            expires_at = own
    renewal = jwt_expiry(refresh_token)
    if renewal is not None and (expires_at is None or renewal < expires_at):
        expires_at = renewal
    return expires_at


def token_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        # A bare answer is a token only when it looks like one: not an HTML page, not a sentence.
        return value if not _NOT_A_TOKEN.search(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None

"""Token responses: their body parsed, and the token, refresh token and ``expires_at`` read as Nango
reads them (spec §5.5, ``parseRawCredentials``); the credentials made of them are in :mod:`.shapes`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from .errors import PermanentTokenError

__all__ = ["TokenReading", "js_iso", "parse_expires_at", "parse_token_body", "read_token_response", "value_at_path"]


def js_iso(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_token_body(body: bytes, content_type: str) -> dict[str, Any]:
    """JSON, or form-encoded (GitHub without ``Accept: application/json``); anything else is an error."""
    text = body.decode("utf-8", "replace").strip()
    if "json" in content_type or text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise PermanentTokenError(
                "unable_to_parse_token_response", "The token endpoint sent invalid JSON."
            ) from None
        if not isinstance(data, dict):
            raise PermanentTokenError(
                "unable_to_parse_token_response", "The token endpoint sent JSON that is not an object."
            )
        return data
    if "x-www-form-urlencoded" in content_type or ("=" in text and "<" not in text and " " not in text):
        return dict(parse_qsl(text, keep_blank_values=True))
    kind = "HTML" if "<" in text[:100] else "an unreadable body"
    raise PermanentTokenError("unable_to_parse_token_response", f"The token endpoint sent {kind} instead of a token.")


def parse_expires_at(raw: dict[str, Any], now: datetime, *, expires_in_ms: bool = False) -> datetime | None:
    """``expires_at`` (date, ISO string, unix seconds) wins; else ``now + expires_in`` (in seconds, or
    milliseconds when the template's ``expires_in_unit`` says so); else no expiry."""
    value = raw.get("expires_at")
    if value not in (None, ""):
        if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
            if parsed is not None:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    seconds = raw.get("expires_in")
    try:
        if seconds not in (None, ""):
            amount = float(seconds)
            return now + (timedelta(milliseconds=int(amount)) if expires_in_ms else timedelta(seconds=int(amount)))
    except (TypeError, ValueError):
        return None
    return None


def value_at_path(source: Any, path: str) -> Any:
    """The value at a dot path (``authed_user.access_token``), or None."""
    value = source
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@dataclass(frozen=True, kw_only=True)
class TokenReading:
    """What one token response says: the token, the refresh token, when the token expires."""

    access_token: str | None
    refresh_token: str | None
    expires_at: datetime | None


def read_token_response(
    raw: dict[str, Any],
    *,
    now: datetime,
    alternate_path: str | None = None,
    expires_in_ms: bool = False,
) -> TokenReading:
    """The token where the template says to look for it.

    The top level first. Where it has no ``access_token``, ``alternate_path`` (Slack's user-token-only
    installs: ``authed_user``): a value there is the token, an object there is read as a token
    response of its own (refresh token and expiry included). Where both levels hold a token that
    expires (Slack's bot and user tokens, rotation on), the connection expires with the first.
    """
    token = raw.get("access_token")
    nested = value_at_path(raw, alternate_path) if alternate_path else None
    context = raw
    if not (isinstance(token, str) and token) and nested is not None:
        if isinstance(nested, dict):
            context, token = nested, nested.get("access_token")
        else:
            token = nested
    expires_at = parse_expires_at(context, now, expires_in_ms=expires_in_ms)
    if context is raw and isinstance(nested, dict) and nested.get("access_token"):
        other = parse_expires_at(nested, now, expires_in_ms=expires_in_ms)
        if other is not None and (expires_at is None or other < expires_at):
            expires_at = other
    refresh = context.get("refresh_token")
    return TokenReading(
        access_token=token if isinstance(token, str) and token else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
    )

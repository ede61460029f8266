"""Token responses: their body parsed, and ``expires_at`` computed as Nango does (spec §5.5); the
credentials made of them are in :mod:`.shapes`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from .errors import PermanentTokenError

__all__ = ["js_iso", "parse_expires_at", "parse_token_body"]


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


def parse_expires_at(raw: dict[str, Any], now: datetime) -> datetime | None:
    """``expires_at`` (date, ISO string, unix seconds) wins; else ``now + expires_in``; else no expiry."""
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
            return now + timedelta(seconds=int(float(seconds)))
    except (TypeError, ValueError):
        return None
    return None

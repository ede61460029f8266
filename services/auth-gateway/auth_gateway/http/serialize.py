"""The JSON shapes Nango's node SDK reads (spec §3.2), with JavaScript-style timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from keyway_shared.store import Connection

__all__ = ["connection_body", "connection_json", "js_iso", "strip_refresh_token"]


def js_iso(value: datetime | None) -> str | None:
    """``Date.prototype.toISOString``: UTC, milliseconds, ``Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat is C and pads the year to four digits as JavaScript does; strftime was 5x slower
    # and this runs three times on every GET /connection.
    return value.isoformat(timespec="milliseconds") + "Z"


def strip_refresh_token(credentials: dict[str, Any]) -> dict[str, Any]:
    """The refresh token is only returned when asked for, at the top level and inside ``raw``: its
    ``refresh_token``, and wherever else the provider's answer holds the same value (a TWO_STEP
    template reads it from a path of its own: ``RefreshToken``, ``data.refresh``)."""
    secret = credentials.get("refresh_token")
    out = {k: v for k, v in credentials.items() if k != "refresh_token"}
    raw = out.get("raw")
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k != "refresh_token"}
        out["raw"] = _without_value(raw, secret) if isinstance(secret, str) and secret else raw
    return out


def _without_value(value: Any, secret: str) -> Any:
    if isinstance(value, dict):
        return {k: _without_value(v, secret) for k, v in value.items() if v != secret}
    if isinstance(value, list):
        return [_without_value(item, secret) for item in value if item != secret]
    return value


def connection_json(conn: Connection, *, include_refresh_token: bool, fetched_at: datetime | None) -> dict[str, Any]:
    return connection_body(
        conn, include_refresh_token=include_refresh_token, last_fetched_at=js_iso(fetched_at or conn.last_fetched_at)
    )


def connection_body(conn: Connection, *, include_refresh_token: bool, last_fetched_at: str | None) -> dict[str, Any]:
    """:func:`connection_json` with its one per-read field already written (see ``api/connection_answer``)."""
    document = conn.credentials.dump()
    credentials = document if include_refresh_token else strip_refresh_token(document)
    return {
        "id": conn.id,
        "created_at": js_iso(conn.created_at),
        "updated_at": js_iso(conn.updated_at),
        "provider_config_key": conn.provider_config_key,
        "provider": conn.provider,
        "connection_id": conn.connection_id,
        "environment": conn.environment,
        "connection_config": conn.connection_config,
        "metadata": conn.metadata,
        "credentials": credentials,
        "credentials_iv": None,
        "credentials_tag": None,
        "last_fetched_at": last_fetched_at,
        "deleted": False,
        "deleted_at": None,
    }

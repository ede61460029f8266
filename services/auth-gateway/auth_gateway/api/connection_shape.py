"""A connection as Nango's current API shows it (its ``ApiPublicConnection`` and ``ApiPublicConnectionFull``).

The 2024 routes (``/connection…``) answer the stored connection nearly as it is (``http/serialize.py``);
the current ones (``/connections…``) answer a curated view:

- listed (``GET /connections``): ``id``, ``connection_id``, ``provider_config_key``, ``provider``,
  ``errors``, ``end_user``, ``tags``, ``metadata``, ``created``;
- one (``GET /connections/{id}``, ``POST /connections``): the same without ``created``, plus
  ``connection_config``, ``webhook_url_override``, ``created_at``, ``updated_at``,
  ``last_fetched_at`` and ``credentials`` (the refresh token only when asked for).

Nango writes the times of ``GET`` as ``2025-01-02T03:04:05.678+00:00`` and those of ``POST`` with a
``Z``; both are kept. ``errors`` lists what needs the app's attention: Nango's active logs, here one
``{"type": "auth"}`` entry while the connection's credentials cannot be refreshed (Keyway's
activity log finds the attempts by connection, so ``log_id`` is null). The end user is Nango's
``ApiEndUser``: ``id``, ``display_name``, ``email``, ``tags``, ``organization`` (``id``,
``display_name``), every field present, null when unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from keyway_shared.store import Connection

from ..http.serialize import js_iso, strip_refresh_token

__all__ = [
    "CONNECTION_ANSWER",
    "LIST_ANSWER",
    "end_user_json",
    "errors_json",
    "full_connection_body",
    "full_connection_json",
    "listed_connection_json",
    "offset_iso",
]


def offset_iso(value: datetime | None) -> str | None:
    """Nango's ``GET`` time: UTC, milliseconds, ``+00:00``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def end_user_json(end_user: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not end_user or not end_user.get("id"):
        return None
    organization = end_user.get("organization")
    return {
        "id": end_user["id"],
        "display_name": end_user.get("display_name"),
        "email": end_user.get("email"),
        "tags": end_user.get("tags") or None,
        "organization": {"id": organization["id"], "display_name": organization.get("display_name")}
        if isinstance(organization, Mapping) and organization.get("id") is not None
        else None,
    }


def errors_json(refresh_failed: bool) -> list[dict[str, Any]]:
    return [{"type": "auth", "log_id": None}] if refresh_failed else []


def listed_connection_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One item of ``GET /connections``, from a listed document (``store.connection_labels.LISTED_FIELDS``)."""
    return {
        "id": doc.get("id"),
        "connection_id": doc["connection_id"],
        "provider_config_key": doc["provider_config_key"],
        "provider": doc.get("provider"),
        "errors": errors_json(bool(doc.get("refresh_failed"))),
        "end_user": end_user_json(doc.get("end_user")),
        "tags": doc.get("tags") or {},
        "metadata": doc.get("metadata"),
        "created": offset_iso(doc.get("created_at")),
    }


def full_connection_json(
    conn: Connection,
    *,
    include_refresh_token: bool,
    fetched_at: datetime | None = None,
    written: bool = False,
) -> dict[str, Any]:
    """``GET /connections/{id}`` (or, ``written``, the answer of ``POST /connections``: ``Z`` times)."""
    stamp = js_iso if written else offset_iso
    last_fetched = fetched_at or conn.last_fetched_at
    return full_connection_body(
        conn,
        include_refresh_token=include_refresh_token,
        written=written,
        last_fetched_at=stamp(last_fetched) if last_fetched else None,
    )


def full_connection_body(
    conn: Connection, *, include_refresh_token: bool, written: bool, last_fetched_at: str | None
) -> dict[str, Any]:
    """:func:`full_connection_json` with its one per-read field already written (see ``connection_answer``)."""
    stamp = js_iso if written else offset_iso
    document = conn.credentials.dump()
    return {
        "id": conn.id,
        "connection_id": conn.connection_id,
        "provider_config_key": conn.provider_config_key,
        "provider": conn.provider,
        "errors": errors_json(conn.refresh_failed),
        "end_user": end_user_json(conn.end_user),
        "tags": conn.tags or {},
        "metadata": conn.metadata,
        "connection_config": conn.connection_config or {},
        "webhook_url_override": conn.webhook_url_override,
        "created_at": stamp(conn.created_at),
        "updated_at": stamp(conn.updated_at),
        "last_fetched_at": last_fetched_at,
        "credentials": document if include_refresh_token else strip_refresh_token(document),
    }


_TEXT: dict[str, Any] = {"type": "string"}
_NULLABLE_TEXT: dict[str, Any] = {"type": ["string", "null"]}
_ERRORS: dict[str, Any] = {
    "type": "array",
    "description": "What needs attention: one {type: auth} while the credentials cannot be refreshed",
    "items": {"type": "object", "properties": {"type": _TEXT, "log_id": _NULLABLE_TEXT}},
}
_END_USER: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "id": _TEXT,
        "display_name": _NULLABLE_TEXT,
        "email": _NULLABLE_TEXT,
        "tags": {"type": ["object", "null"], "additionalProperties": _TEXT},
        "organization": {
            "type": ["object", "null"],
            "properties": {"id": _TEXT, "display_name": _NULLABLE_TEXT},
        },
    },
}
_COMMON: dict[str, Any] = {
    "id": {"type": "integer"},
    "connection_id": _TEXT,
    "provider_config_key": _TEXT,
    "provider": _TEXT,
    "errors": _ERRORS,
    "end_user": _END_USER,
    "tags": {"type": "object", "additionalProperties": _TEXT},
    "metadata": {"type": ["object", "null"]},
}
LIST_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["connections"],
    "properties": {
        "connections": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [*_COMMON, "created"],
                "properties": {**_COMMON, "created": _TEXT},
            },
        }
    },
}
CONNECTION_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": [*_COMMON, "connection_config", "created_at", "updated_at", "credentials"],
    "properties": {
        **_COMMON,
        "connection_config": {"type": "object"},
        "webhook_url_override": _NULLABLE_TEXT,
        "created_at": _TEXT,
        "updated_at": _TEXT,
        "last_fetched_at": _NULLABLE_TEXT,
        "credentials": {"type": "object", "description": "By auth mode; the refresh token only when asked for"},
    },
}

"""What a Nango connection is labelled with (its end user, its tags, where its webhooks go), read from
the versions that have them, and the fields that write them onto the imported connection.

- End user: the ``end_users`` row (since 2024-09, v0.42.x) of ``_nango_connections.end_user_id``:
  ``end_user_id``, ``email``, ``display_name``, ``organization_id``, ``organization_display_name`` and,
  since 2025-07, ``tags`` (json). Keyway keeps it as a connect session does: ``{id, email?,
  display_name?, tags?, organization?: {id, display_name?}}``.
- Tags: ``_nango_connections.tags`` (jsonb, since 2026-01; Nango's backfill put the end user's there).
- Webhook URL override: ``_nango_connections.webhook_url_override`` (since 2026-07). Before that column,
  from 2026-06, it was ``connection_config.webhook_url``; Nango's migration moved it (trimmed, empty
  meaning none) and removed it from the configuration, and so does the import from such a version.

A Nango with none of these columns labels nothing: its connections are imported as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keyway_shared.store.connection_labels import tag_fields

if TYPE_CHECKING:
    from .nango import NangoReader

__all__ = ["LABEL_COLUMNS", "ConnectionLabels", "LabelSource", "label_update"]

LABEL_COLUMNS = ("end_user_id", "tags", "webhook_url_override")


@dataclass(frozen=True, kw_only=True)
class ConnectionLabels:
    end_user: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    webhook_url_override: str | None = None


def _mapping(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value[:1] == "{":
        value = json.loads(value)
    return dict(value) if isinstance(value, Mapping) else {}


def _tags(value: Any) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in _mapping(value).items() if v is not None}


def _end_user(row: dict[str, Any]) -> dict[str, Any]:
    """Only the fields it has, as a connect session stores them."""
    found: dict[str, Any] = {"id": str(row["end_user_id"])}
    for name in ("email", "display_name"):
        if row.get(name):
            found[name] = str(row[name])
    tags = _tags(row.get("tags"))
    if tags:
        found["tags"] = tags
    if row.get("organization_id"):
        organization = {"id": str(row["organization_id"])}
        if row.get("organization_display_name"):
            organization["display_name"] = str(row["organization_display_name"])
        found["organization"] = organization
    return found


class LabelSource:
    """Reads the labels of the connections of one page; ``open`` is None for a Nango without them."""

    def __init__(self, reader: NangoReader, columns: set[str]) -> None:
        self._reader = reader
        self._columns = columns
        # Between the connection tags (2026-01) and the override's own column (2026-07).
        self._hoist = "tags" in columns and "webhook_url_override" not in columns

    @classmethod
    async def open(cls, reader: NangoReader) -> LabelSource | None:
        columns = await reader.columns("_nango_connections")
        if not columns & set(LABEL_COLUMNS):
            return None
        return cls(reader, columns)

    async def end_users(self, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """The end users of these connection rows, by their ``end_users.id``."""
        ids = sorted({int(row["end_user_id"]) for row in rows if row.get("end_user_id") is not None})
        if not ids or not await self._reader.columns("end_users"):
            return {}
        found = await self._reader.select(
            "end_users",
            ["id", "end_user_id"],
            ["email", "display_name", "organization_id", "organization_display_name", "tags"],
            "WHERE id = ANY(%s)",
            (ids,),
        )
        return {int(row["id"]): _end_user(row) for row in found}

    def labels(
        self, row: dict[str, Any], end_users: dict[int, dict[str, Any]], connection_config: dict[str, Any]
    ) -> ConnectionLabels:
        """The row's labels; a webhook URL still in ``connection_config`` is taken out of it."""
        override = row.get("webhook_url_override")
        if self._hoist and "webhook_url" in connection_config:
            override = connection_config.pop("webhook_url")
        override = override.strip() if isinstance(override, str) else None
        end_user_id = row.get("end_user_id")
        return ConnectionLabels(
            end_user=end_users.get(int(end_user_id)) if end_user_id is not None else None,
            tags=_tags(row.get("tags")),
            webhook_url_override=override or None,
        )


def label_update(labels: ConnectionLabels) -> dict[str, Any]:
    """The update that gives an imported connection these labels (and takes away those it had)."""
    unset = {name: "" for name in ("end_user", "webhook_url_override") if getattr(labels, name) is None}
    update: dict[str, Any] = {"$set": tag_fields(labels.tags)}
    if labels.end_user is not None:
        update["$set"]["end_user"] = labels.end_user
    if labels.webhook_url_override is not None:
        update["$set"]["webhook_url_override"] = labels.webhook_url_override
    if unset:
        update["$unset"] = unset
    return update

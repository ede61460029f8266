"""Changing what an app labels a connection with: its end user, tags and webhook URL override.

``PATCH /connections/{id}`` as Nango's current API does it (its ``handlePatchConnection``):

- ``end_user`` replaces the connection's end user (id, email, display name, its own tags; Nango's
  PATCH takes no organization, so the one the end user had is dropped, as there);
- the connection's tags become the end user's derived tags (``end_user_id``, ``end_user_email``,
  ``end_user_display_name``, then the end user's own tags) overlaid with the body's ``tags``, once
  either is given; given only ``tags``, they replace the connection's;
- ``webhook_url_override`` sets the URL its webhooks go to instead of the environment's; ``""``
  drops it.

The change and its ``connection.updated`` event (operation ``config``) are written together and
acknowledged like every connection write, so each replica's connection cache hears of it first.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.events import CloudEvent, ConnectionUpdated, EventData, make_event
from keyway_shared.service import MONGO_CLIENT, MONGO_DB
from keyway_shared.store.connection_labels import ConnectionLabelStore, tag_fields

from .connection_tags import end_user_tags, tag_problems
from .connections import SOURCE, written_and_announced

__all__ = ["LabelsRefusedError", "label_changes", "relabel_connection"]


class LabelsRefusedError(ValueError):
    """The tags the change would leave are not tags Nango would keep (too many keys, for one)."""


def label_changes(
    *,
    end_user: dict[str, Any] | None,
    tags: dict[str, str] | None,
    webhook_url_override: str | None,
) -> dict[str, Any]:
    """The document fields a PATCH sets (``end_user`` without the fields left out)."""
    changes: dict[str, Any] = {}
    if end_user is not None:
        changes["end_user"] = {k: v for k, v in end_user.items() if v is not None}
    if end_user is not None or tags is not None:
        merged = {**end_user_tags(end_user, None), **(tags or {})}
        if problems := tag_problems(merged):
            raise LabelsRefusedError("; ".join(problems))
        changes |= tag_fields(merged)
    if webhook_url_override is not None:
        changes["webhook_url_override"] = webhook_url_override or None
    return changes


def _config_event(doc: dict[str, Any]) -> CloudEvent[EventData]:
    """``connection.updated`` (``config``), naming the connection and its labels as they now are
    (as ``Connection.event_identity`` does: a label left unset is left out)."""
    identity: dict[str, Any] = {name: doc[name] for name in ("connection_id", "provider_config_key", "provider")}
    identity["auth_mode"] = doc["auth_mode"]
    for label in ("end_user", "tags", "webhook_url_override"):
        if doc.get(label):
            identity[label] = doc[label]
    data = ConnectionUpdated(**identity, credentials_expire_at=doc.get("credentials_expires_at"), operation="config")
    return make_event(
        data,
        type="connection.updated",
        source=SOURCE,
        environment=doc["environment"],
        subject=f"{doc['provider_config_key']}/{doc['connection_id']}",
    )


async def relabel_connection(
    app: web.Application, environment: str, provider_config_key: str, connection_id: str, changes: dict[str, Any]
) -> bool:
    """Write ``changes`` (from :func:`label_changes`) with their event; False when there is no such connection."""
    store = ConnectionLabelStore(app[MONGO_CLIENT], app[MONGO_DB])
    result = await store.relabel_with_event(environment, provider_config_key, connection_id, changes, _config_event)
    if result is None:
        return False
    await written_and_announced(app, result[1], (environment, provider_config_key, connection_id))
    return True

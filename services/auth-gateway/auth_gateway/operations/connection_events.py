"""The events a connection change publishes through the outbox (``connection.*``)."""

from __future__ import annotations

from typing import Any

from keyway_shared.events import CloudEvent, ConnectionDeleted, ConnectionUpdated, EventData, make_event
from keyway_shared.store import Connection

from .connections import SOURCE

__all__ = ["connection_event", "deleted_event", "metadata_event"]


def connection_event(kind: str, data: EventData, conn: Connection) -> CloudEvent[EventData]:
    return make_event(
        data,
        type=kind,
        source=SOURCE,
        environment=conn.environment,
        subject=f"{conn.provider_config_key}/{conn.connection_id}",
    )


def _event_fields(conn: Connection) -> dict[str, Any]:
    return {**conn.event_identity(), "credentials_expire_at": conn.credentials_expires_at}


def deleted_event(conn: Connection) -> CloudEvent[EventData]:
    return connection_event("connection.deleted", ConnectionDeleted(**_event_fields(conn)), conn)


def metadata_event(conn: Connection) -> CloudEvent[EventData]:
    return connection_event("connection.updated", ConnectionUpdated(**_event_fields(conn), operation="metadata"), conn)

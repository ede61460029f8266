"""The CloudEvents 1.0 JSON envelope every Keyway event travels in.

``specversion``, ``id``, ``source``, ``type``, ``time``, ``subject``, ``datacontenttype`` and ``data``
are CloudEvents attributes; ``environment`` is Keyway's extension attribute (lower-case alphanumeric,
as the spec requires of extension names) naming the environment (``dev``, ``prod``) the event
belongs to. ``dataschemaversion`` versions the payload shape so subscribers can evolve with it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AUTH_MODE_HEADER", "CloudEvent", "EventData", "new_event_id", "utcnow"]

# The AMQP header naming the auth mode of the connection an event is about (when it says).
AUTH_MODE_HEADER = "auth_mode"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return str(uuid.uuid4())


class EventData(BaseModel):
    """Base of every event payload. Unknown fields are kept, so older consumers read newer events."""

    model_config = ConfigDict(extra="allow", frozen=True)


DataT = TypeVar("DataT", bound=EventData)


class CloudEvent(BaseModel, Generic[DataT]):
    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_event_id, min_length=1)
    source: str = Field(min_length=1, description="URI-reference of the producing service, e.g. /keyway/auth-gateway")
    type: str = Field(min_length=1, description="event type, e.g. connection.created; also the routing key")
    time: datetime = Field(default_factory=utcnow)
    subject: str | None = Field(default=None, description="what the event is about, e.g. the connection")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschemaversion: str = Field(default="1", description="version of the data shape of this type")
    environment: str = Field(min_length=1, description="Keyway extension: the environment name")
    data: DataT

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True, serialize_as_any=True).encode()

    def header_fields(self) -> dict[str, Any]:
        """The attributes, without data, for logs and AMQP headers; plus, for an event about a
        connection's credentials, their ``auth_mode``, which a consumer's queue may be bound on
        (``keyway_shared.bus.topology.HeaderFilter``)."""
        fields = {"ce_id": self.id, "ce_type": self.type, "ce_source": self.source, "environment": self.environment}
        auth_mode = getattr(self.data, "auth_mode", None)
        if isinstance(auth_mode, str):
            fields[AUTH_MODE_HEADER] = auth_mode
        return fields

"""The bodies of the current ``/connections`` routes, as strict as Nango's zod schemas.

- ``PATCH /connections/{id}`` (its ``controllers/shared/connections/patchConnection.ts``): ``end_user``
  (``id`` 1 to 255 characters, ``email``, ``display_name`` at most 255, ``tags``: end-user tags),
  ``tags`` (connection tags), ``webhook_url_override`` (a URL, or ``""`` to drop it); nothing else.
- ``POST``/``PATCH /connections/metadata`` (``connectionId/metadata/postMetadata.ts``):
  ``connection_id`` (one id or a list), ``provider_config_key``, ``metadata`` (an object); nothing else.

An unknown field, or a value Nango would refuse, is ``invalid_body`` with the list of issues.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..operations.nango_fields import ConnectionId, ConnectionTags, Email, EndUserTags, IntegrationKey, WebhookUrl

__all__ = ["ConnectionPatch", "ConnectionTags", "EndUserPatch", "MetadataBody", "WebhookUrl"]


class EndUserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    email: Email | None = None
    display_name: str | None = Field(default=None, max_length=255)
    tags: EndUserTags | None = None


class ConnectionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    end_user: EndUserPatch | None = None
    tags: ConnectionTags | None = None
    webhook_url_override: WebhookUrl | None = None


class MetadataBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connection_id: ConnectionId | list[ConnectionId]
    provider_config_key: IntegrationKey
    metadata: dict[str, Any]

    def connection_ids(self) -> list[str]:
        return self.connection_id if isinstance(self.connection_id, list) else [self.connection_id]

"""The bodies of the current ``/connections`` routes, as strict as Nango's zod schemas.

- ``PATCH /connections/{id}`` (its ``controllers/shared/connections/patchConnection.ts``): ``end_user``
  (``id`` 1 to 255 characters, ``email``, ``display_name`` at most 255, ``tags``: end-user tags),
  ``tags`` (connection tags), ``webhook_url_override`` (a URL, or ``""`` to drop it); nothing else.
- ``POST``/``PATCH /connections/metadata`` (``connectionId/metadata/postMetadata.ts``):
  ``connection_id`` (one id or a list), ``provider_config_key``, ``metadata`` (an object); nothing else.

An unknown field, or a value Nango would refuse, is ``invalid_body`` with the list of issues.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..operations.connection_tags import EMAIL, lowercased, tag_problems

__all__ = ["ConnectionPatch", "ConnectionTags", "EndUserPatch", "MetadataBody", "WebhookUrl"]

IntegrationKey = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9~:.@ _-]+$", max_length=255)]
ConnectionId = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9,.;:=+~\[\]|@${}\"'\\/_ -]+$", max_length=255)]


def _email(value: str) -> str:
    if len(value) < 5 or not EMAIL.fullmatch(value):
        raise ValueError("Invalid email address")
    return value


def _end_user_tags(tags: dict[str, str]) -> dict[str, str]:
    if problems := tag_problems(tags, empty_values=True):
        raise ValueError("; ".join(problems))
    return tags


def _connection_tags(tags: dict[str, str]) -> dict[str, str]:
    if problems := tag_problems(tags):
        raise ValueError("; ".join(problems))
    return lowercased(tags)


def _webhook_url(url: str) -> str:
    """An http(s) URL with a host, or ``""``: Nango's ``z.url()`` or the empty literal."""
    scheme, sep, rest = url.partition("://")
    if url and not (sep and scheme.lower() in ("http", "https") and rest.split("/", 1)[0] and len(url) <= 2048):
        raise ValueError("Invalid URL: an http or https URL, or an empty string for none")
    return url


ConnectionTags = Annotated[dict[str, str], AfterValidator(_connection_tags)]
WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]


class EndUserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    email: Annotated[str, AfterValidator(_email)] | None = None
    display_name: str | None = Field(default=None, max_length=255)
    tags: (
        Annotated[dict[str, Annotated[str, StringConstraints(max_length=255)]], AfterValidator(_end_user_tags)] | None
    ) = None


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

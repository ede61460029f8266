"""The bodies of ``POST /connect/sessions`` and ``POST /connect/sessions/reconnect``, as strict as
Nango's current zod schemas (its server's ``controllers/connect/postSessions.ts`` and
``postReconnect.ts``, with ``helpers/validation.ts``): an unknown field is refused, and so is an
integration key, a connection id, an email or a tag Nango would refuse.

Nango's rules kept here:
- ``end_user``: ``id`` (1 to 255 characters), ``email`` (an email of at least 5), ``display_name``
  (at most 255), ``tags`` (end-user tags); nothing else. It may be left out when the body has
  top-level ``tags`` (Nango's second schema); a reconnect never needs it.
- ``organization``: ``id`` (at most 255, may be empty) and ``display_name`` (at most 255).
- ``allowed_integrations``, and the keys of ``integrations_config_defaults`` and ``overrides``:
  integration keys (``[a-zA-Z0-9~:.@ _-]``, at most 255), which must exist (checked by the view).
- ``integrations_config_defaults.<key>``: ``user_scopes``, ``authorization_params`` (strings),
  ``connection_config`` (any fields; ``oauth_scopes_override`` a string); its deprecated
  ``connection_config.webhook_url`` becomes ``webhook_url_override`` when that is not given.
- ``overrides.<key>.docs_connect``: a string (Keyway asks for an http(s) URL: the Connect UI links to
  it); other fields of an override are dropped, as zod's non-strict object drops them.
- ``webhook_url_override``: a URL, or ``""`` for none.
- ``tags``: connection tags (``operations/connection_tags.py``), keys lowercased.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..http.errors import ApiError
from ..operations.nango_fields import (
    ConnectionId,
    ConnectionTags,
    Email,
    EndUserTags,
    IntegrationKey,
    WebhookUrl,
    is_http_url,
)

__all__ = [
    "ReconnectSessionBody",
    "SessionBody",
    "SessionEndUser",
    "SessionOrganization",
    "hoist_deprecated_webhook_url",
]


def _docs_url(url: str) -> str:
    if not is_http_url(url):
        raise ValueError("Invalid URL: docs_connect must be an http or https URL")
    return url


class SessionEndUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    email: Email | None = None
    display_name: str | None = Field(default=None, max_length=255)
    tags: EndUserTags | None = None


class SessionOrganization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(max_length=255)
    display_name: str | None = Field(default=None, max_length=255)


class SessionConnectionConfig(BaseModel):
    """Nango's loose object: any fields, ``oauth_scopes_override`` (if given) a string."""

    model_config = ConfigDict(extra="allow")
    oauth_scopes_override: str | None = None


class IntegrationDefaults(BaseModel):
    """Nango's per-integration defaults: what the OAuth flow uses whatever the browser sends."""

    model_config = ConfigDict(extra="forbid")
    user_scopes: str | None = None
    authorization_params: dict[str, str] | None = None
    # oauth_client_*_override: "" lets the browser give it (connect/protocol/flow_overrides.py)
    connection_config: SessionConnectionConfig | None = None


class IntegrationOverride(BaseModel):
    model_config = ConfigDict(extra="ignore")
    docs_connect: Annotated[str, AfterValidator(_docs_url)] | None = None


class _SessionFields(BaseModel):
    """What both bodies share."""

    model_config = ConfigDict(extra="forbid")
    organization: SessionOrganization | None = None
    integrations_config_defaults: dict[IntegrationKey, IntegrationDefaults] | None = None
    overrides: dict[IntegrationKey, IntegrationOverride] | None = None
    webhook_url_override: WebhookUrl | None = None
    tags: ConnectionTags | None = None

    def defaults_dump(self) -> dict[str, dict[str, Any]] | None:
        defaults = self.integrations_config_defaults
        if not defaults:
            return None
        return {key: value.model_dump(exclude_none=True) for key, value in defaults.items()}

    def overrides_dump(self) -> dict[str, dict[str, Any]] | None:
        return {k: v.model_dump(exclude_none=True) for k, v in self.overrides.items()} if self.overrides else None


class SessionBody(_SessionFields):
    """``POST /connect/sessions``: ``end_user`` is required unless top-level ``tags`` are given."""

    end_user: SessionEndUser | None = None
    allowed_integrations: list[IntegrationKey] | None = None

    @model_validator(mode="after")
    def _end_user_or_tags(self) -> SessionBody:
        if self.end_user is None and self.tags is None:
            raise ValueError("end_user is required unless tags are provided")
        return self


class ReconnectSessionBody(_SessionFields):
    """``POST /connect/sessions/reconnect``: the connection to authorize again, by its id and integration."""

    connection_id: ConnectionId
    integration_id: IntegrationKey
    end_user: SessionEndUser | None = None


def hoist_deprecated_webhook_url(body: dict[str, Any]) -> dict[str, Any]:
    """Nango's ``mapDeprecatedConnectionConfigWebhookUrl``, on the raw body before validation:
    ``integrations_config_defaults.<key>.connection_config.webhook_url`` is taken out (it never lands
    in a connection's configuration) and, when ``webhook_url_override`` is not given, the first
    non-empty one becomes it. A bad one is refused, naming where it was."""
    defaults = body.get("integrations_config_defaults")
    if not isinstance(defaults, dict):
        return body
    hoisted: list[str] = []
    issues: list[dict[str, Any]] = []
    cleaned: dict[str, Any] = {}
    for key, value in defaults.items():
        config = value.get("connection_config") if isinstance(value, dict) else None
        if not isinstance(config, dict) or "webhook_url" not in config:
            cleaned[key] = value
            continue
        rest = {k: v for k, v in config.items() if k != "webhook_url"}
        url = config["webhook_url"]
        if url is not None and (not isinstance(url, str) or (url and not is_http_url(url))):
            issues.append(
                {
                    "code": "invalid_format",
                    "message": "Invalid URL. Note: connection_config.webhook_url is deprecated; "
                    "use top-level webhook_url_override instead.",
                    "path": ["integrations_config_defaults", key, "connection_config", "webhook_url"],
                }
            )
            continue
        if url:
            hoisted.append(url)
        kept = {k: v for k, v in value.items() if k != "connection_config"}
        cleaned[key] = {**kept, "connection_config": rest} if rest else kept
    if issues:
        raise ApiError("invalid_body", "The request body is invalid.", errors=issues)
    body = {**body, "integrations_config_defaults": cleaned}
    if "webhook_url_override" not in body and hoisted:
        body["webhook_url_override"] = hoisted[0]
    return body

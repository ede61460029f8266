"""Typed results of Nango's current API generation (the routes ``@nangohq/node`` 0.71 calls).

The 2024 routes' results (``_models.py``) keep their classes; where a current route answers the same
kind of thing in another shape, its class is prefixed ``Current``. As everywhere in this package,
secrets stay out of ``repr`` and ``data`` keeps the JSON as received, so a field the gateway adds
later is reachable before this package names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._credentials import Credentials, as_datetime, as_object, as_str, parse_credentials, str_map
from ._errors import TransportError

__all__ = [
    "ConnectSession",
    "ConnectSessionToken",
    "ConnectionIssue",
    "CurrentConnection",
    "CurrentConnectionSummary",
    "CurrentIntegration",
    "EndUser",
    "EndUserOrganization",
    "IntegrationApp",
    "Provider",
    "data_of",
    "parse_connect_session",
    "parse_connect_session_token",
    "parse_current_connection",
    "parse_current_connection_summary",
    "parse_current_integration",
    "parse_end_user",
    "parse_provider",
]


def _required(data: Mapping[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise TransportError(f"{what} without {name!r}")
    return value


def _id(value: Any) -> int | str | None:
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _object_or_none(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def data_of(body: Any, what: str) -> Any:
    """The ``data`` member every current answer wraps its result in."""
    if not isinstance(body, dict) or "data" not in body:
        raise TransportError(f"{what}: no 'data' in the answer")
    return body["data"]


# ------------------------------------------------------------------------------------------------ providers


@dataclass(frozen=True, kw_only=True)
class Provider:
    """One provider of ``GET /providers``: its catalog template (Nango's providers.yaml) with its name."""

    name: str
    auth_mode: str | None
    display_name: str | None
    categories: list[str]
    docs: str | None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_provider(value: Any) -> Provider:
    data = as_object(value)
    return Provider(
        name=_required(data, "name", "a provider"),
        auth_mode=as_str(data.get("auth_mode")),
        display_name=as_str(data.get("display_name")),
        categories=_strings(data.get("categories")),
        docs=as_str(data.get("docs")),
        data=data,
    )


# -------------------------------------------------------------------------------------------- integrations


@dataclass(frozen=True, kw_only=True)
class IntegrationApp:
    """An integration's own app (``?include=credentials``), shaped by its provider's auth mode.

    OAUTH1, OAUTH2 and TBA hold ``client_id``, ``client_secret``, ``scopes``, ``webhook_secret``;
    APP holds ``app_id``, ``private_key``, ``app_link``; CUSTOM holds both clients' fields. A field
    the mode does not have is None. MCP integrations (MCP_OAUTH2, MCP_OAUTH2_GENERIC) show none, as
    Nango's do: their client is Keyway's own; their connections hold ``OAuth2Credentials``.
    """

    type: str | None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: list[str] | None = None  # a comma-separated string on the wire
    webhook_secret: str | None = field(default=None, repr=False)
    app_id: str | None = None
    app_link: str | None = None
    private_key: str | None = field(default=None, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class CurrentIntegration:
    """An integration of ``/integrations`` (Nango's ``ApiPublicIntegration``).

    ``webhook_url`` and ``credentials`` are None unless asked for (``include_webhook``,
    ``include_credentials``), and also when asked for but the integration has none: ``"credentials"
    in data`` tells the two apart.
    """

    unique_key: str
    provider: str
    display_name: str | None
    forward_webhooks: bool | None
    created_at: datetime | None
    updated_at: datetime | None
    webhook_url: str | None = None
    credentials: IntegrationApp | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def _integration_app(value: Any) -> IntegrationApp | None:
    if not isinstance(value, Mapping):
        return None
    data = dict(value)
    scopes = data.get("scopes")
    return IntegrationApp(
        type=as_str(data.get("type")),
        client_id=as_str(data.get("client_id")),
        client_secret=as_str(data.get("client_secret")),
        scopes=[s for s in scopes.split(",") if s] if isinstance(scopes, str) else None,
        webhook_secret=as_str(data.get("webhook_secret")),
        app_id=as_str(data.get("app_id")),
        app_link=as_str(data.get("app_link")),
        private_key=as_str(data.get("private_key")),
        data=data,
    )


def parse_current_integration(value: Any) -> CurrentIntegration:
    data = as_object(value)
    forward = data.get("forward_webhooks")
    return CurrentIntegration(
        unique_key=_required(data, "unique_key", "an integration"),
        provider=_required(data, "provider", "an integration"),
        display_name=as_str(data.get("display_name")),
        forward_webhooks=forward if isinstance(forward, bool) else None,
        created_at=as_datetime(data.get("created_at")),
        updated_at=as_datetime(data.get("updated_at")),
        webhook_url=as_str(data.get("webhook_url")),
        credentials=_integration_app(data.get("credentials")),
        data=data,
    )


# ------------------------------------------------------------------------------------------- connections


@dataclass(frozen=True, kw_only=True)
class EndUserOrganization:
    id: str
    display_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class EndUser:
    """Who a connection (or connect session) belongs to in the app (Nango's ``ApiEndUser``)."""

    id: str
    display_name: str | None = None
    email: str | None = None
    tags: dict[str, str] | None = None
    organization: EndUserOrganization | None = None


def parse_end_user(value: Any, organization: Any = None) -> EndUser | None:
    """``value`` as Nango's ``ApiEndUser``; ``organization`` when it is sent beside it (older shapes)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), str):
        return None
    org = value.get("organization", organization)
    tags = value.get("tags")
    return EndUser(
        id=value["id"],
        display_name=as_str(value.get("display_name")),
        email=as_str(value.get("email")),
        tags=str_map(tags) if isinstance(tags, Mapping) else None,
        organization=EndUserOrganization(id=str(org["id"]), display_name=as_str(org.get("display_name")))
        if isinstance(org, Mapping) and org.get("id") is not None
        else None,
    )


@dataclass(frozen=True, kw_only=True)
class ConnectionIssue:
    """One entry of a connection's ``errors``: what needs the app's attention (``auth``: its
    credentials cannot be refreshed)."""

    type: str | None
    log_id: str | None = None


def _issues(value: Any) -> list[ConnectionIssue]:
    if not isinstance(value, list):
        return []
    return [
        ConnectionIssue(type=as_str(item.get("type")), log_id=as_str(item.get("log_id")))
        for item in value
        if isinstance(item, Mapping)
    ]


@dataclass(frozen=True, kw_only=True)
class CurrentConnectionSummary:
    """One entry of ``GET /connections`` (Nango's ``ApiPublicConnection``)."""

    id: int | str | None
    connection_id: str
    provider_config_key: str
    provider: str | None
    errors: list[ConnectionIssue]
    end_user: EndUser | None
    tags: dict[str, str]
    metadata: dict[str, Any] | None
    created: datetime | None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class CurrentConnection:
    """``GET /connections/{id}`` and ``POST /connections`` (Nango's ``ApiPublicConnectionFull``):
    the summary's fields but ``created``, with the connection's configuration, times and credentials."""

    id: int | str | None
    connection_id: str
    provider_config_key: str
    provider: str | None
    errors: list[ConnectionIssue]
    end_user: EndUser | None
    tags: dict[str, str]
    metadata: dict[str, Any] | None
    connection_config: dict[str, Any]
    webhook_url_override: str | None
    created_at: datetime | None
    updated_at: datetime | None
    last_fetched_at: datetime | None
    credentials: Credentials
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_current_connection_summary(value: Any) -> CurrentConnectionSummary:
    data = as_object(value)
    return CurrentConnectionSummary(
        id=_id(data.get("id")),
        connection_id=_required(data, "connection_id", "a listed connection"),
        provider_config_key=_required(data, "provider_config_key", "a listed connection"),
        provider=as_str(data.get("provider")),
        errors=_issues(data.get("errors")),
        end_user=parse_end_user(data.get("end_user")),
        tags=str_map(data.get("tags")),
        metadata=_object_or_none(data.get("metadata")),
        created=as_datetime(data.get("created")),
        data=data,
    )


def parse_current_connection(value: Any) -> CurrentConnection:
    data = as_object(value)
    return CurrentConnection(
        id=_id(data.get("id")),
        connection_id=_required(data, "connection_id", "a connection"),
        provider_config_key=_required(data, "provider_config_key", "a connection"),
        provider=as_str(data.get("provider")),
        errors=_issues(data.get("errors")),
        end_user=parse_end_user(data.get("end_user")),
        tags=str_map(data.get("tags")),
        metadata=_object_or_none(data.get("metadata")),
        connection_config=as_object(data.get("connection_config")),
        webhook_url_override=as_str(data.get("webhook_url_override")),
        created_at=as_datetime(data.get("created_at")),
        updated_at=as_datetime(data.get("updated_at")),
        last_fetched_at=as_datetime(data.get("last_fetched_at")),
        credentials=parse_credentials(data.get("credentials")),
        data=data,
    )


# ---------------------------------------------------------------------------------------- connect sessions


@dataclass(frozen=True, kw_only=True)
class ConnectSessionToken:
    """What minting a connect session answers: the token the frontend opens the Connect UI with, and
    ``connect_link``, a page the end user can be sent to instead."""

    token: str = field(repr=False)
    connect_link: str | None = field(default=None, repr=False)  # carries the token too
    expires_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_connect_session_token(value: Any) -> ConnectSessionToken:
    data = as_object(value)
    return ConnectSessionToken(
        token=_required(data, "token", "a connect session"),
        connect_link=as_str(data.get("connect_link")),
        expires_at=as_datetime(data.get("expires_at")),
        data=data,
    )


@dataclass(frozen=True, kw_only=True)
class ConnectSession:
    """``GET /connect/session``: what a connect session allows, read with its own token."""

    end_user: EndUser | None
    allowed_integrations: list[str] | None
    integrations_config_defaults: dict[str, Any] | None
    overrides: dict[str, Any] | None
    is_reconnecting: bool
    expires_at: datetime | None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_connect_session(value: Any) -> ConnectSession:
    data = as_object(value)
    # Nango's current shape names the end user ``endUser``; Keyway's first one ``end_user`` and
    # ``organization`` beside it, which a gateway of that time still sends alone.
    end_user = parse_end_user(data.get("endUser")) or parse_end_user(data.get("end_user"), data.get("organization"))
    allowed = data.get("allowed_integrations")
    return ConnectSession(
        end_user=end_user,
        allowed_integrations=_strings(allowed) if isinstance(allowed, list) else None,
        integrations_config_defaults=_object_or_none(data.get("integrations_config_defaults")),
        overrides=_object_or_none(data.get("overrides")),
        is_reconnecting=data.get("isReconnecting") is True,
        expires_at=as_datetime(data.get("expires_at")),
        data=data,
    )

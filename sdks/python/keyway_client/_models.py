"""Typed results: the JSON the gateway answers (spec §3), read into frozen dataclasses.

Secrets (tokens, keys, passwords, client secrets) are left out of ``repr`` so that logging a result
does not log a credential. Every result keeps the JSON it was read from in ``data``, so a field the
gateway adds later is reachable before this package learns its name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from ._errors import TransportError

__all__ = [
    "ApiKeyCredentials",
    "AppCredentials",
    "AppStoreCredentials",
    "BasicCredentials",
    "ClientCredentials",
    "Connection",
    "ConnectionSummary",
    "Credentials",
    "Integration",
    "IntegrationSummary",
    "NoCredentials",
    "OAuth1Credentials",
    "OAuth2Credentials",
    "ProxyResponse",
    "TbaCredentials",
    "Timeout",
    "UnknownCredentials",
    "parse_connection",
    "parse_connection_summary",
    "parse_credentials",
    "parse_integration",
    "parse_integration_summary",
]


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """How long a call may take: ``total`` from start to the last byte, ``connect`` to open the socket."""

    total: float | None = 30.0
    connect: float | None = 10.0


def _dt(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


# ---------------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True, kw_only=True)
class OAuth2Credentials:
    type: Literal["OAUTH2"] = "OAUTH2"
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)  # only when asked for
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the provider's token response
    config_override: dict[str, str] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class OAuth1Credentials:
    type: Literal["OAUTH1"] = "OAUTH1"
    oauth_token: str = field(repr=False)
    oauth_token_secret: str = field(repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ClientCredentials:
    """OAuth 2 client credentials (``OAUTH2_CC``): the token, and the client the connection holds."""

    type: Literal["OAUTH2_CC"] = "OAUTH2_CC"
    token: str = field(repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class AppCredentials:
    """A GitHub App installation token (``APP``)."""

    type: Literal["APP"] = "APP"
    access_token: str = field(repr=False)
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class AppStoreCredentials:
    type: Literal["APP_STORE"] = "APP_STORE"
    access_token: str = field(repr=False)
    private_key: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ApiKeyCredentials:
    type: Literal["API_KEY"] = "API_KEY"
    api_key: str = field(repr=False)  # ``apiKey`` on the wire
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class BasicCredentials:
    type: Literal["BASIC"] = "BASIC"
    username: str
    password: str = field(default="", repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TbaCredentials:
    """NetSuite token-based auth (``TBA``)."""

    type: Literal["TBA"] = "TBA"
    token_id: str = field(repr=False)
    token_secret: str = field(repr=False)
    config_override: dict[str, str] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class NoCredentials:
    """An unauthenticated connection (``NONE``): the gateway answers ``{}``."""

    type: None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class UnknownCredentials:
    """A credentials type this version does not know; everything is in ``data``."""

    type: str | None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


Credentials: TypeAlias = (
    OAuth2Credentials
    | OAuth1Credentials
    | ClientCredentials
    | AppCredentials
    | AppStoreCredentials
    | ApiKeyCredentials
    | BasicCredentials
    | TbaCredentials
    | NoCredentials
    | UnknownCredentials
)


def parse_credentials(value: Any) -> Credentials:
    data = _obj(value)
    kind = data.get("type")
    try:
        if kind == "OAUTH2":
            return OAuth2Credentials(
                access_token=data["access_token"],
                refresh_token=_str(data.get("refresh_token")),
                expires_at=_dt(data.get("expires_at")),
                raw=_obj(data.get("raw")),
                config_override=_str_map(data.get("config_override")),
                data=data,
            )
        if kind == "OAUTH1":
            return OAuth1Credentials(
                oauth_token=data["oauth_token"],
                oauth_token_secret=data["oauth_token_secret"],
                raw=_obj(data.get("raw")),
                data=data,
            )
        if kind == "OAUTH2_CC":
            return ClientCredentials(
                token=data.get("token") or data["access_token"],
                client_id=_str(data.get("client_id")),
                client_secret=_str(data.get("client_secret")),
                expires_at=_dt(data.get("expires_at")),
                raw=_obj(data.get("raw")),
                data=data,
            )
        if kind == "APP":
            return AppCredentials(
                access_token=data["access_token"],
                expires_at=_dt(data.get("expires_at")),
                raw=_obj(data.get("raw")),
                data=data,
            )
        if kind == "APP_STORE":
            return AppStoreCredentials(
                access_token=data["access_token"],
                private_key=_str(data.get("private_key")),
                expires_at=_dt(data.get("expires_at")),
                raw=_obj(data.get("raw")),
                data=data,
            )
        if kind == "API_KEY":
            return ApiKeyCredentials(api_key=data["apiKey"], data=data)
        if kind == "BASIC":
            return BasicCredentials(username=data["username"], password=data.get("password") or "", data=data)
        if kind == "TBA":
            return TbaCredentials(
                token_id=data["token_id"],
                token_secret=data["token_secret"],
                config_override=_str_map(data.get("config_override")),
                data=data,
            )
    except KeyError as exc:
        raise TransportError(f"{kind} credentials without {exc.args[0]!r}") from None
    if kind is None and not data:
        return NoCredentials(data=data)
    return UnknownCredentials(type=_str(kind), data=data)


# ---------------------------------------------------------------------------------------------- connections


@dataclass(frozen=True, kw_only=True)
class Connection:
    """``GET /connection/{id}``: one connection with its credentials."""

    id: int | str | None
    connection_id: str
    provider_config_key: str
    provider: str | None
    environment: str | None
    created_at: datetime | None
    updated_at: datetime | None
    last_fetched_at: datetime | None
    connection_config: dict[str, Any]
    metadata: dict[str, Any] | None
    credentials: Credentials
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ConnectionSummary:
    """One entry of ``GET /connection``."""

    id: int | str | None
    connection_id: str
    provider_config_key: str
    provider: str | None
    created: datetime | None
    metadata: dict[str, Any] | None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def _id(value: Any) -> int | str | None:
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _metadata(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _required(data: Mapping[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise TransportError(f"{what} without {name!r}")
    return value


def parse_connection(value: Any) -> Connection:
    data = _obj(value)
    return Connection(
        id=_id(data.get("id")),
        connection_id=_required(data, "connection_id", "a connection"),
        provider_config_key=_required(data, "provider_config_key", "a connection"),
        provider=_str(data.get("provider")),
        environment=_str(data.get("environment")),
        created_at=_dt(data.get("created_at")),
        updated_at=_dt(data.get("updated_at")),
        last_fetched_at=_dt(data.get("last_fetched_at")),
        connection_config=_obj(data.get("connection_config")),
        metadata=_metadata(data.get("metadata")),
        credentials=parse_credentials(data.get("credentials")),
        data=data,
    )


def parse_connection_summary(value: Any) -> ConnectionSummary:
    data = _obj(value)
    return ConnectionSummary(
        id=_id(data.get("id")),
        connection_id=_required(data, "connection_id", "a listed connection"),
        provider_config_key=_required(data, "provider_config_key", "a listed connection"),
        provider=_str(data.get("provider")),
        created=_dt(data.get("created")),
        metadata=_metadata(data.get("metadata")),
        data=data,
    )


# --------------------------------------------------------------------------------------------- integrations


@dataclass(frozen=True, kw_only=True)
class IntegrationSummary:
    """An entry of ``GET /config``, and what creating or updating an integration answers."""

    unique_key: str
    provider: str
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class Integration:
    """``GET /config/{key}``; the client fields are None unless asked for with ``include_credentials``."""

    unique_key: str
    provider: str
    syncs: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    auth_mode: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: list[str] | None = None  # a comma-separated string on the wire
    app_link: str | None = None
    custom: dict[str, str] | None = field(default=None, repr=False)
    created_at: datetime | None = None
    docs: str | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def parse_integration_summary(value: Any) -> IntegrationSummary:
    data = _obj(value)
    return IntegrationSummary(
        unique_key=_required(data, "unique_key", "an integration"),
        provider=_required(data, "provider", "an integration"),
        data=data,
    )


def parse_integration(value: Any) -> Integration:
    data = _obj(value)
    scopes = data.get("scopes")
    return Integration(
        unique_key=_required(data, "unique_key", "an integration"),
        provider=_required(data, "provider", "an integration"),
        syncs=[dict(s) for s in data.get("syncs") or [] if isinstance(s, Mapping)],
        actions=[dict(a) for a in data.get("actions") or [] if isinstance(a, Mapping)],
        auth_mode=_str(data.get("auth_mode")),
        client_id=_str(data.get("client_id")),
        client_secret=_str(data.get("client_secret")),
        scopes=[s for s in scopes.split(",") if s] if isinstance(scopes, str) else None,
        app_link=_str(data.get("app_link")),
        custom=_str_map(data["custom"]) if isinstance(data.get("custom"), Mapping) else None,
        created_at=_dt(data.get("created_at")),
        docs=_str(data.get("docs")),
        data=data,
    )


# -------------------------------------------------------------------------------------------------- proxy


@dataclass(frozen=True, kw_only=True)
class ProxyResponse:
    """What the third-party API answered through ``/proxy``, whatever its status."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding, errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> ProxyResponse:
        """Raise :class:`ApiError` (or its subclass for the status) unless the upstream answered 2xx."""
        from ._errors import error_from_response

        if self.ok:
            return self
        try:
            body: Any = self.json()
        except ValueError:
            body = None
        raise error_from_response(self.status, self.headers, body, self.text())

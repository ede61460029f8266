"""Typed results: connections, integrations and proxy answers as the gateway sends them (spec §3).

As with credentials, secrets stay out of ``repr`` and ``data`` keeps the JSON as received.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._credentials import Credentials, as_datetime, as_object, as_str, parse_credentials, str_map
from ._errors import TransportError, error_from_response

__all__ = [
    "Connection",
    "ConnectionSummary",
    "Integration",
    "IntegrationSummary",
    "ProxyResponse",
    "Timeout",
    "parse_connection",
    "parse_connection_summary",
    "parse_integration",
    "parse_integration_summary",
]


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """How long a call may take: ``total`` from start to the last byte, ``connect`` to open the socket."""

    total: float | None = 30.0
    connect: float | None = 10.0


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
    data = as_object(value)
    return Connection(
        id=_id(data.get("id")),
        connection_id=_required(data, "connection_id", "a connection"),
        provider_config_key=_required(data, "provider_config_key", "a connection"),
        provider=as_str(data.get("provider")),
        environment=as_str(data.get("environment")),
        created_at=as_datetime(data.get("created_at")),
        updated_at=as_datetime(data.get("updated_at")),
        last_fetched_at=as_datetime(data.get("last_fetched_at")),
        connection_config=as_object(data.get("connection_config")),
        metadata=_metadata(data.get("metadata")),
        credentials=parse_credentials(data.get("credentials")),
        data=data,
    )


def parse_connection_summary(value: Any) -> ConnectionSummary:
    data = as_object(value)
    return ConnectionSummary(
        id=_id(data.get("id")),
        connection_id=_required(data, "connection_id", "a listed connection"),
        provider_config_key=_required(data, "provider_config_key", "a listed connection"),
        provider=as_str(data.get("provider")),
        created=as_datetime(data.get("created")),
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
    data = as_object(value)
    return IntegrationSummary(
        unique_key=_required(data, "unique_key", "an integration"),
        provider=_required(data, "provider", "an integration"),
        data=data,
    )


def parse_integration(value: Any) -> Integration:
    data = as_object(value)
    scopes = data.get("scopes")
    return Integration(
        unique_key=_required(data, "unique_key", "an integration"),
        provider=_required(data, "provider", "an integration"),
        syncs=[dict(s) for s in data.get("syncs") or [] if isinstance(s, Mapping)],
        actions=[dict(a) for a in data.get("actions") or [] if isinstance(a, Mapping)],
        auth_mode=as_str(data.get("auth_mode")),
        client_id=as_str(data.get("client_id")),
        client_secret=as_str(data.get("client_secret")),
        scopes=[s for s in scopes.split(",") if s] if isinstance(scopes, str) else None,
        app_link=as_str(data.get("app_link")),
        custom=str_map(data["custom"]) if isinstance(data.get("custom"), Mapping) else None,
        created_at=as_datetime(data.get("created_at")),
        docs=as_str(data.get("docs")),
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
        if self.ok:
            return self
        try:
            body: Any = self.json()
        except ValueError:
            body = None
        raise error_from_response(self.status, self.headers, body, self.text())

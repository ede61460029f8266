"""Credentials as ``GET /connection/{id}`` answers them (spec §3.2), one class per auth mode.

Secrets are left out of ``repr``, so logging a result does not log a credential; ``data`` keeps the
JSON as received, so a field the gateway adds later is reachable before this package names it.
"""

from __future__ import annotations

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
    "Credentials",
    "JwtCredentials",
    "NoCredentials",
    "OAuth1Credentials",
    "OAuth2Credentials",
    "SignatureCredentials",
    "TbaCredentials",
    "TwoStepCredentials",
    "UnknownCredentials",
    "as_datetime",
    "as_object",
    "as_str",
    "parse_credentials",
    "str_map",
]


def as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def as_object(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


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
class JwtCredentials:
    """A JWT the gateway signs (``JWT``): the token, and the fields it is signed from (``fields``: which
    ones depends on the provider, e.g. ``privateKey``, ``issuerId``), re-signed before ``expires_at``."""

    type: Literal["JWT"] = "JWT"
    token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    fields: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class AwsSigV4Credentials:
    """AWS (``AWS_SIGV4``): the role, and the temporary key STS gave for it (renewed before ``expires_at``)."""

    type: Literal["AWS_SIGV4"] = "AWS_SIGV4"
    role_arn: str
    region: str
    service: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expires_at: datetime | None = None
    external_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class SignatureCredentials:
    """A WSSE signature's user name and password (``SIGNATURE``), and the last token made of them
    (the proxy makes a new one for each request)."""

    type: Literal["SIGNATURE"] = "SIGNATURE"
    username: str
    password: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class BillCredentials:
    """Bill's Connect API (``BILL``): the login and the session it gave (renewed before ``expires_at``)."""

    type: Literal["BILL"] = "BILL"
    username: str
    password: str = field(repr=False)
    organization_id: str
    dev_key: str = field(repr=False)
    session_id: str | None = field(default=None, repr=False)
    user_id: str | None = None
    expires_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TwoStepCredentials:
    """A token minted from a person's credentials at the provider's token request (``TWO_STEP``).

    ``fields`` are the person's own (``apiKey``, ``username``, ...), which mint the next token; the
    gateway keeps them beside the token, as Nango does."""

    type: Literal["TWO_STEP"] = "TWO_STEP"
    token: str = field(repr=False)
    expires_at: datetime | None = None
    refresh_token: str | None = field(default=None, repr=False)  # only when asked for
    raw: Any = field(default_factory=dict, repr=False)  # the token response (text when it is the bare token)
    fields: dict[str, Any] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)


_TWO_STEP_KEYS = frozenset({"type", "token", "expires_at", "refresh_token", "raw"})


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
    | JwtCredentials
    | SignatureCredentials
    | AwsSigV4Credentials
    | BillCredentials
    | TwoStepCredentials
    | NoCredentials
    | UnknownCredentials
)


def parse_credentials(value: Any) -> Credentials:
    data = as_object(value)
    kind = data.get("type")
    try:
        if kind == "OAUTH2":
            return OAuth2Credentials(
                access_token=data["access_token"],
                refresh_token=as_str(data.get("refresh_token")),
                expires_at=as_datetime(data.get("expires_at")),
                raw=as_object(data.get("raw")),
                config_override=str_map(data.get("config_override")),
                data=data,
            )
        if kind == "OAUTH1":
            return OAuth1Credentials(
                oauth_token=data["oauth_token"],
                oauth_token_secret=data["oauth_token_secret"],
                raw=as_object(data.get("raw")),
                data=data,
            )
        if kind == "OAUTH2_CC":
            return ClientCredentials(
                token=data.get("token") or data["access_token"],
                client_id=as_str(data.get("client_id")),
                client_secret=as_str(data.get("client_secret")),
                expires_at=as_datetime(data.get("expires_at")),
                raw=as_object(data.get("raw")),
                data=data,
            )
        if kind == "APP":
            return AppCredentials(
                access_token=data["access_token"],
                expires_at=as_datetime(data.get("expires_at")),
                raw=as_object(data.get("raw")),
                data=data,
            )
        if kind == "APP_STORE":
            return AppStoreCredentials(
                access_token=data["access_token"],
                private_key=as_str(data.get("private_key")),
                expires_at=as_datetime(data.get("expires_at")),
                raw=as_object(data.get("raw")),
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
                config_override=str_map(data.get("config_override")),
                data=data,
            )
        if kind == "JWT":
            return JwtCredentials(
                token=as_str(data.get("token")),
                expires_at=as_datetime(data.get("expires_at")),
                fields={key: value for key, value in data.items() if key not in ("type", "token", "expires_at")},
                data=data,
            )
        if kind == "SIGNATURE":
            return SignatureCredentials(
                username=data["username"],
                password=data["password"],
                token=as_str(data.get("token")),
                expires_at=as_datetime(data.get("expires_at")),
                data=data,
            )
        if kind == "AWS_SIGV4":
            return AwsSigV4Credentials(
                role_arn=data["role_arn"],
                region=data["region"],
                service=data["service"],
                access_key_id=data["access_key_id"],
                secret_access_key=data["secret_access_key"],
                session_token=data["session_token"],
                expires_at=as_datetime(data.get("expires_at")),
                external_id=as_str(data.get("external_id")),
                raw=as_object(data.get("raw")),
                data=data,
            )
        if kind == "BILL":
            return BillCredentials(
                username=data["username"],
                password=data["password"],
                organization_id=data["organization_id"],
                dev_key=data["dev_key"],
                session_id=as_str(data.get("session_id")),
                user_id=as_str(data.get("user_id")),
                expires_at=as_datetime(data.get("expires_at")),
                raw=as_object(data.get("raw")),
                data=data,
            )
        if kind == "TWO_STEP":
            return TwoStepCredentials(
                token=data["token"],
                expires_at=as_datetime(data.get("expires_at")),
                refresh_token=as_str(data.get("refresh_token")),
                raw=data.get("raw", {}),
                fields={key: value for key, value in data.items() if key not in _TWO_STEP_KEYS},
                data=data,
            )
    except KeyError as exc:
        raise TransportError(f"{kind} credentials without {exc.args[0]!r}") from None
    if kind is None and not data:
        return NoCredentials(data=data)
    return UnknownCredentials(type=as_str(kind), data=data)

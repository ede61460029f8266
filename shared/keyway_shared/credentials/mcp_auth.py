"""OAuth 2 for MCP servers: what differs from a catalog provider's OAuth 2, and nothing else.

An MCP server's authorization server is OAuth 2 with three additions (the MCP authorization spec):

- its endpoints may be *discovered*: the server's protected-resource metadata (RFC 9728) names its
  authorization server, whose metadata (RFC 8414) names the endpoints;
- Keyway's client is Keyway's own there: registered by Keyway (RFC 7591, a public client unless the
  server hands out a secret), or named by the URL of Keyway's client ID metadata document;
- PKCE (S256) always, and the ``resource`` parameter (RFC 8707) in the authorization and token
  requests.

The rest is the OAuth 2 code grant and refresh Keyway already has: :func:`mcp_template` rewrites a
catalog template into the ordinary OAuth 2 template of one authorization server, and the gateway's
OAuth 2 flow and the shared refresh run on it. No database here: what a connection or integration
keeps (:class:`AuthorizationServer` in the connection's configuration, :class:`RegisteredClient` in
the integration's encrypted ``custom``) is read and written by the callers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..egress import failure_reason
from ..logging import get_logger
from ..providers import ProviderTemplate

if TYPE_CHECKING:
    from ..store import Integration
from .bounded_body import ResponseTooLargeError, read_bounded
from .errors import PermanentTokenError, TransientTokenError

__all__ = [
    "CLIENT_INFO_FIELD",
    "KEPT_FIELDS",
    "REGISTERED_PREFIX",
    "AuthorizationServer",
    "McpMetadataError",
    "RegisteredClient",
    "checked_endpoint",
    "client_in_config",
    "client_secret_for",
    "discover",
    "mcp_template",
    "own_client_refresh",
    "proxy_base",
    "register_client",
    "registered_client",
]

log = get_logger(__name__)

# Connection configuration fields, as Nango names them for MCP_OAUTH2_GENERIC.
METADATA_FIELD = "oauth_metadata"  # the authorization server's metadata, JSON text
CLIENT_INFO_FIELD = "oauth_client_info"  # {"client_id": ...}, JSON text (never the secret: that stays encrypted)
RESOURCE_FIELD = "oauth_resource_url"
KEPT_FIELDS = frozenset({METADATA_FIELD, CLIENT_INFO_FIELD, RESOURCE_FIELD})  # only Keyway's flow writes them
# An integration's ``custom`` key for the client registered at one registration endpoint.
REGISTERED_PREFIX = "mcp_client:"
_MAX_METADATA_BYTES = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class AuthorizationServer:
    """What a flow and its refreshes need of an authorization server."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None = None
    client_id_metadata_document_supported: bool = False
    scopes: tuple[str, ...] = ()  # the resource's scopes_supported, else the server's
    resource: str | None = None  # the protected resource's identifier (RFC 9728 ``resource``)

    def to_config(self) -> dict[str, str]:
        metadata = {k: v for k, v in asdict(self).items() if k not in ("resource", "scopes")}
        metadata["scopes_supported"] = list(self.scopes)
        return {METADATA_FIELD: json.dumps(metadata), RESOURCE_FIELD: self.resource or ""}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, allow_http: bool) -> AuthorizationServer | None:
        """The server a stored connection was authorized by; None when it keeps none (the catalog's)."""
        text = config.get(METADATA_FIELD)
        if not isinstance(text, str) or not text:
            return None
        try:
            metadata = json.loads(text)
            server = cls(
                issuer=str(metadata.get("issuer") or ""),
                authorization_endpoint=checked_endpoint(metadata.get("authorization_endpoint"), allow_http=allow_http),
                token_endpoint=checked_endpoint(metadata.get("token_endpoint"), allow_http=allow_http),
                resource=str(config.get(RESOURCE_FIELD) or "") or None,
            )
        except (ValueError, AttributeError, McpMetadataError):
            raise PermanentTokenError(
                "invalid_oauth_metadata", "The connection's OAuth metadata is not usable."
            ) from None
        return server


@dataclass(frozen=True, kw_only=True)
class RegisteredClient:
    client_id: str
    client_secret: str = ""  # empty: a public client (token_endpoint_auth_method "none")
    redirect_uri: str = ""  # the one it was registered with: another one needs another registration

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> RegisteredClient | None:
        try:
            data = json.loads(text)
            return cls(
                client_id=str(data["client_id"]),
                client_secret=str(data.get("client_secret") or ""),
                redirect_uri=str(data.get("redirect_uri") or ""),
            )
        except (ValueError, KeyError, TypeError):
            return None


class McpMetadataError(ValueError):
    """Discovery or registration failed; the message names what, never a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def checked_endpoint(value: object, *, allow_http: bool) -> str:
    """An endpoint a server named, as a URL Keyway will send a code, a token or a secret to: https
    (http only where the MCP server itself was given as http, which only a template allowing it lets
    through), no userinfo, no fragment, and no ``${`` (it would be read as a template expression)."""
    if not isinstance(value, str) or not value:
        raise McpMetadataError("invalid_oauth_metadata", "The authorization server's metadata lacks an endpoint.")
    parts = urlsplit(value)
    schemes = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password or parts.fragment:
        raise McpMetadataError("invalid_oauth_metadata", "A discovered OAuth endpoint is not an https URL.")
    if "${" in value:
        raise McpMetadataError("invalid_oauth_metadata", "A discovered OAuth endpoint holds a template expression.")
    return value


def registered_client(custom: Mapping[str, str], registration_endpoint: str) -> RegisteredClient | None:
    text = custom.get(REGISTERED_PREFIX + registration_endpoint)
    return RegisteredClient.loads(text) if text else None


def client_secret_for(custom: Mapping[str, str], client_id: str) -> str:
    """The secret a registration gave ``client_id``; empty for a public client or one not registered here."""
    for name, text in custom.items():
        client = RegisteredClient.loads(text) if name.startswith(REGISTERED_PREFIX) else None
        if client is not None and client.client_id == client_id:
            return client.client_secret
    return ""


def client_in_config(config: Mapping[str, Any]) -> str | None:
    """The client id a stored connection was authorized with."""
    text = config.get(CLIENT_INFO_FIELD)
    try:
        client_id = json.loads(text).get("client_id") if isinstance(text, str) else None
    except (ValueError, AttributeError):
        return None
    return client_id if isinstance(client_id, str) and client_id else None


def proxy_base(config: Mapping[str, Any]) -> str | None:
    """Where the proxy sends a discovered MCP server's calls when its template names no base URL: the
    server's URL, for a connection Keyway's own flow authorized there (the flow alone writes the
    metadata beside it; a template could not take a browser's whole URL as its base)."""
    url = config.get("mcp_server_url")
    return url if isinstance(url, str) and url and config.get(METADATA_FIELD) else None


def mcp_template(template: ProviderTemplate, server: AuthorizationServer | None) -> ProviderTemplate:
    """The catalog's template as the ordinary OAuth 2 template of ``server`` (None: the template's own
    endpoints): PKCE on, and the resource indicator in the authorization, token and refresh requests."""
    updates: dict[str, Any] = {"disable_pkce": False}
    resource = template.authorization_params.get("resource")
    if server is not None:
        updates |= {
            "authorization_url": server.authorization_endpoint,
            "token_url": server.token_endpoint,
            "refresh_url": None,
        }
        resource = server.resource or resource
    if resource:
        updates["authorization_params"] = {**template.authorization_params, "resource": resource}
        updates["token_params"] = {**template.token_params, "resource": resource}
        refresh = template.refresh_params or {k: v for k, v in template.token_params.items() if k != "grant_type"}
        updates["refresh_params"] = {**refresh, "resource": resource}
    return template.model_copy(update=updates)


def own_client_refresh(
    template: ProviderTemplate, integration: Integration, config: Mapping[str, Any]
) -> tuple[ProviderTemplate, str, str]:
    """(template, client id, client secret) a stored connection of Keyway's own client refreshes with:
    the authorization server it was authorized by (kept in its configuration, else the catalog's), the
    client it was authorized as, and that client's secret, kept encrypted on the integration."""
    mcp_url = config.get("mcp_server_url")
    allow_http = isinstance(mcp_url, str) and urlsplit(mcp_url).scheme == "http"
    server = AuthorizationServer.from_config(config, allow_http=allow_http)
    client_id = client_in_config(config) or integration.oauth_client_id
    if not client_id:
        raise PermanentTokenError("missing_client_credentials", "The connection names no OAuth client to refresh as.")
    secret = client_secret_for(integration.custom, client_id)
    if not secret and client_id == integration.oauth_client_id:
        secret = integration.oauth_client_secret or ""
    return mcp_template(template, server), client_id, secret


async def _get_json(http: aiohttp.ClientSession, url: str, timeout_seconds: float) -> dict[str, Any] | None:
    """A metadata document; None when there is none at ``url`` (4xx); network trouble raises."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with http.get(url, headers={"Accept": "application/json"}, allow_redirects=False) as response:
                body = await read_bounded(response, _MAX_METADATA_BYTES)
                status = response.status
    except ResponseTooLargeError:
        raise McpMetadataError("invalid_oauth_metadata", "A metadata document is too large.") from None
    except TimeoutError:
        raise TransientTokenError("metadata_timeout", "The MCP server's metadata did not arrive in time.") from None
    except aiohttp.ClientError as exc:
        raise _unreachable(url, exc, "The MCP server's metadata could not be reached.") from None
    if status >= 500:
        raise TransientTokenError("metadata_unavailable", f"A metadata endpoint answered {status}.", status=status)
    if status != 200:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _unreachable(url: str, exc: BaseException, message: str) -> TransientTokenError:
    """One answer whatever the cause (refused by the egress guard, unknown name, silent host): the
    cause is logged, never told, so a browser choosing the URL cannot map internal names."""
    log.warning("mcp metadata unreachable", host=urlsplit(url).hostname, reason=failure_reason(exc))
    return TransientTokenError("metadata_unreachable", message)


def _well_known(url: str, name: str, *, path_aware: bool = True) -> str:
    """RFC 8414 §3 / RFC 9728 §3.1: the well-known name goes between the host and the path."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") if path_aware else ""
    return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{name}{path}", "", ""))


async def _resource_metadata(http: aiohttp.ClientSession, server_url: str, seconds: float) -> dict[str, Any] | None:
    candidates = [_well_known(server_url, "oauth-protected-resource")]
    root = _well_known(server_url, "oauth-protected-resource", path_aware=False)
    if root not in candidates:
        candidates.append(root)
    for url in candidates:
        if (document := await _get_json(http, url, seconds)) is not None:
            return document
    return None


async def _server_metadata(http: aiohttp.ClientSession, issuer: str, seconds: float) -> dict[str, Any] | None:
    candidates = [
        _well_known(issuer, "oauth-authorization-server"),
        _well_known(issuer, "openid-configuration"),
        issuer.rstrip("/") + "/.well-known/openid-configuration",
    ]
    for url in dict.fromkeys(candidates):
        if (document := await _get_json(http, url, seconds)) is not None:
            return document
    return None


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


async def discover(http: aiohttp.ClientSession, mcp_server_url: str, *, timeout_seconds: float) -> AuthorizationServer:
    """The authorization server of the MCP server at ``mcp_server_url``: its protected-resource
    metadata names it (without one, the server's own origin is its authorization server), whose
    metadata names the endpoints. Every URL found is checked before anything is sent to it."""
    allow_http = urlsplit(mcp_server_url).scheme == "http"
    checked_endpoint(mcp_server_url, allow_http=allow_http)
    resource_doc = await _resource_metadata(http, mcp_server_url, timeout_seconds) or {}
    servers = _strings(resource_doc.get("authorization_servers"))
    parts = urlsplit(mcp_server_url)
    issuer = servers[0] if servers else urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    checked_endpoint(issuer, allow_http=allow_http)
    metadata = await _server_metadata(http, issuer, timeout_seconds)
    if metadata is None:
        raise McpMetadataError("invalid_oauth_metadata", "The MCP server's authorization server publishes no metadata.")
    methods = _strings(metadata.get("code_challenge_methods_supported"))
    if methods and "S256" not in methods:
        raise McpMetadataError("invalid_oauth_metadata", "The authorization server does not support PKCE with S256.")
    registration = metadata.get("registration_endpoint")
    resource = resource_doc.get("resource")
    if resource is not None and (not isinstance(resource, str) or "${" in resource):
        raise McpMetadataError("invalid_oauth_metadata", "The MCP server's resource identifier is not usable.")
    return AuthorizationServer(
        issuer=str(metadata.get("issuer") or issuer),
        authorization_endpoint=checked_endpoint(metadata.get("authorization_endpoint"), allow_http=allow_http),
        token_endpoint=checked_endpoint(metadata.get("token_endpoint"), allow_http=allow_http),
        registration_endpoint=checked_endpoint(registration, allow_http=allow_http) if registration else None,
        client_id_metadata_document_supported=metadata.get("client_id_metadata_document_supported") is True,
        scopes=_strings(resource_doc.get("scopes_supported")) or _strings(metadata.get("scopes_supported")),
        resource=resource or None,
    )


async def register_client(
    http: aiohttp.ClientSession,
    registration_endpoint: str,
    *,
    redirect_uri: str,
    client_name: str,
    extra: Mapping[str, Any],
    timeout_seconds: float,
) -> RegisteredClient:
    """Register Keyway as a public client (RFC 7591), asking for ``token_endpoint_auth_method: none``;
    a server that hands out a secret anyway gets it back in the token requests. ``extra`` adds the
    catalog's ``grant_types``/``response_types`` and the like."""
    body = {
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": client_name,
        **extra,
    }
    try:
        async with asyncio.timeout(timeout_seconds):
            async with http.post(
                registration_endpoint, json=body, headers={"Accept": "application/json"}, allow_redirects=False
            ) as response:
                raw = await read_bounded(response, _MAX_METADATA_BYTES)
                status = response.status
    except ResponseTooLargeError:
        raise McpMetadataError("client_registration_failed", "The registration answer is too large.") from None
    except TimeoutError:
        raise TransientTokenError("registration_timeout", "The client registration did not answer in time.") from None
    except aiohttp.ClientError as exc:
        raise _unreachable(registration_endpoint, exc, "The client registration could not be reached.") from None
    if status >= 500:
        raise TransientTokenError("registration_unavailable", f"The client registration answered {status}.")
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    client_id = answer.get("client_id") if isinstance(answer, dict) else None
    if status not in (200, 201) or not isinstance(client_id, str) or not client_id:
        error = answer.get("error") if isinstance(answer, dict) else None
        log.warning("mcp client registration refused", host=urlsplit(registration_endpoint).hostname, status=status)
        detail = f" ({error})" if isinstance(error, str) else ""
        raise McpMetadataError("client_registration_failed", f"The client registration answered {status}{detail}.")
    secret = answer.get("client_secret") if isinstance(answer, dict) else None
    return RegisteredClient(
        client_id=client_id, client_secret=secret if isinstance(secret, str) else "", redirect_uri=redirect_uri
    )

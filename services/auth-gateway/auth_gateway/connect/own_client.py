"""Keyway's own OAuth client at an MCP server's authorization server, for the modes whose facts say
``own_client``: which client a flow runs as, and the client ID metadata document that names it.

Three ways, as the catalog's ``client_registration`` (or, for a discovered server, its metadata) says:

- ``static``: the integration's client, entered like any OAuth 2 integration's;
- ``cimd``: the client id *is* the URL of Keyway's client ID metadata document,
  ``{public_url}/oauth/client-metadata/{environment}/{integration}``, which the authorization server
  fetches (so Keyway must be reachable there: an https URL, or a loopback one on a developer's
  machine, where only a local authorization server can fetch it anyway);
- ``dynamic``: registered once (RFC 7591) at the registration endpoint for the callback URL in use,
  then kept, secret included, in the integration's encrypted ``custom`` and reused by every connect
  and refresh. Two connects racing to register both register; the first write wins and the other
  uses the winner's client (the integration is written only if unchanged since it was read).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from aiohttp import web

from keyway_shared.credentials import TokenRequestError
from keyway_shared.credentials.mcp_auth import (
    REGISTERED_PREFIX,
    McpMetadataError,
    RegisteredClient,
    register_client,
    registered_client,
)
from keyway_shared.logging import get_logger
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..operations.attempt_steps import record_step
from ..operations.environment import callback_url
from ..operations.flow_errors import FlowError
from ..resources import HTTP, SETTINGS, STORES
from .popup_common import PopupStart

__all__ = ["ClientRegistration", "OwnClient", "catalog_registration", "client_metadata_url", "own_client", "record"]

log = get_logger(__name__)

ClientRegistration = Literal["dynamic", "static", "cimd"]


@dataclass(frozen=True, kw_only=True)
class OwnClient:
    client_id: str
    client_secret: str = ""  # empty: a public client


def _reachable_base(public_url: str) -> bool:
    parts = urlsplit(public_url)
    if parts.scheme == "https":
        return True
    try:
        return parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.hostname == "localhost"


def client_metadata_url(app: web.Application, environment: str, provider_config_key: str) -> str | None:
    """The client id that is Keyway's metadata document for this integration; None when an
    authorization server could not fetch it from where Keyway says it is."""
    public_url = app[SETTINGS].public_url.rstrip("/")
    if not _reachable_base(public_url):
        return None
    return f"{public_url}/oauth/client-metadata/{quote(environment, safe='')}/{quote(provider_config_key, safe='')}"


async def record(start: PopupStart, message: str, **meta: object) -> None:
    """A step of this connect attempt in the activity log (no secret in ``meta``)."""
    front = start.front
    await record_step(
        start.request.app,
        environment=start.env.name,
        operation_id=front.operation_id,
        provider_config_key=front.provider_config_key,
        provider=start.integration.provider,
        connection_id=front.connection_id,
        message=message,
        meta=dict(meta),
    )


async def own_client(
    start: PopupStart,
    *,
    registration: ClientRegistration,
    registration_endpoint: str | None,
    registration_params: dict[str, object] | None = None,
) -> OwnClient:
    """The client this integration's flow runs as; registers one at ``registration_endpoint`` the first
    time (and when the callback URL changed since). FlowError with Nango's codes otherwise."""
    client = await _own_client(start, registration, registration_endpoint, registration_params)
    await record(start, f"OAuth client: {registration}", client_registration=registration, client_id=client.client_id)
    return client


async def _own_client(
    start: PopupStart,
    registration: ClientRegistration,
    registration_endpoint: str | None,
    registration_params: dict[str, object] | None,
) -> OwnClient:
    request, env, integration = start.request, start.env, start.integration
    if registration == "static":
        if not integration.oauth_client_id:
            raise FlowError("provider_config_err", "The integration has no OAuth client id.")
        return OwnClient(client_id=integration.oauth_client_id, client_secret=integration.oauth_client_secret or "")
    if registration == "cimd":
        url = client_metadata_url(request.app, env.name, integration.unique_key)
        if url is None:
            message = "A client ID metadata document needs Keyway at a public https URL (KEYWAY_PUBLIC_URL)."
            raise FlowError("provider_config_err", message)
        return OwnClient(client_id=url)
    if not registration_endpoint:
        raise FlowError("provider_config_err", "The authorization server offers no client registration.")
    redirect_uri = callback_url(request.app, env)
    kept = registered_client(integration.custom, registration_endpoint)
    if kept is not None and kept.redirect_uri == redirect_uri:
        return OwnClient(client_id=kept.client_id, client_secret=kept.client_secret)
    client = await _register(request, env, integration, registration_endpoint, redirect_uri, registration_params)
    host = urlsplit(registration_endpoint).hostname
    await record(start, f"OAuth client registered at {host}", registration_endpoint=registration_endpoint)
    return await _keep(request, integration, registration_endpoint, client)


async def _register(
    request: web.Request,
    env: Environment,
    integration: Integration,
    endpoint: str,
    redirect_uri: str,
    params: dict[str, object] | None,
) -> RegisteredClient:
    # Of the catalog's registration parameters, what Nango sends: the grant and response types.
    extra = {k: v for k, v in (params or {}).items() if k in ("grant_types", "response_types")}
    name = integration.custom.get("oauth_client_name") or f"Keyway - {env.name} - {integration.unique_key}"
    try:
        return await register_client(
            request.app[HTTP],
            endpoint,
            redirect_uri=redirect_uri,
            client_name=name,
            extra=extra,
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    except McpMetadataError as exc:
        raise FlowError("client_registration_err", exc.message) from None
    except TokenRequestError as exc:
        raise FlowError("client_registration_err", exc.description) from None


async def _keep(request: web.Request, integration: Integration, endpoint: str, client: RegisteredClient) -> OwnClient:
    """Store ``client`` on the integration unless another connect stored one first: then use that one."""
    store = request.app[STORES].integrations
    current: Integration | None = integration
    for _attempt in range(3):
        if current is None:
            raise FlowError("provider_config_err", "The integration was deleted during the authorization.")
        kept = registered_client(current.custom, endpoint)
        if kept is not None and kept.redirect_uri == client.redirect_uri:
            return OwnClient(client_id=kept.client_id, client_secret=kept.client_secret)
        current.custom = {**current.custom, REGISTERED_PREFIX + endpoint: client.dumps()}
        if await store.replace_if_unchanged(current):
            log.info("mcp client registered", integration=current.unique_key, host=urlsplit(endpoint).hostname)
            return OwnClient(client_id=client.client_id, client_secret=client.client_secret)
        current = await store.get(integration.environment, integration.unique_key)
    raise FlowError("client_registration_err", "The integration kept changing; try again.")


def catalog_registration(template: ProviderTemplate) -> ClientRegistration:
    """The catalog's ``client_registration``; a template without one registers when it names where."""
    if template.client_registration is not None:
        return template.client_registration
    return "dynamic" if template.registration_url else "static"

"""The route table: a new route is a view plus one line here.

Each line also documents its route; ``openapi.py`` builds ``/openapi.json`` from this same table,
so the document cannot miss a route or describe one that does not exist.
"""

from __future__ import annotations

from aiohttp import web

from .dashboard.routes import DASHBOARD_ROUTES
from .openapi_spec import Route
from .views import (
    api_auth,
    app_auth,
    app_store,
    client_credentials,
    config,
    connect_sessions,
    connection,
    connection_import,
    environment,
    keys,
    metadata,
    oauth,
    provider,
    proxy,
    status,
    unauth,
)
from .ws import websocket_or_index

__all__ = ["ROUTES", "add_routes"]

PUBLIC, SECRET, SESSION, NONE = "public_key", "secret_key", "connect_session", "none"

ROUTES: list[Route] = [
    Route(
        "GET",
        "/",
        websocket_or_index,
        "WebSocket for the frontend SDK (connection_ack, then success or error)",
        "connect",
        NONE,
    ),
    Route("GET", "/health", status.health, "Liveness, as Nango answers it", "operations", NONE),
    # the browser side (public key or connect session token)
    Route(
        "GET",
        "/oauth/connect/{providerConfigKey}",
        oauth.oauth_connect,
        "Start a popup flow (302 to the provider)",
        "connect",
        PUBLIC,
    ),
    Route(
        "GET",
        "/oauth/callback",
        oauth.oauth_callback,
        "The provider's redirect back; closes the popup",
        "connect",
        NONE,
    ),
    Route("GET", "/app-auth/connect", app_auth.app_auth_connect, "GitHub App installation callback", "connect", NONE),
    Route(
        "POST",
        "/api-auth/api-key/{providerConfigKey}",
        api_auth.api_key_auth,
        "Connect with an API key",
        "connect",
        PUBLIC,
    ),
    Route(
        "POST",
        "/api-auth/basic/{providerConfigKey}",
        api_auth.basic_auth,
        "Connect with Basic credentials",
        "connect",
        PUBLIC,
    ),
    Route(
        "POST",
        "/oauth2/auth/{providerConfigKey}",
        client_credentials.client_credentials_auth,
        "Connect with OAuth 2 client credentials",
        "connect",
        PUBLIC,
    ),
    Route(
        "POST",
        "/app-store-auth/{providerConfigKey}",
        app_store.app_store_auth,
        "Connect App Store Connect (ES256 JWT)",
        "connect",
        PUBLIC,
    ),
    Route(
        "POST", "/unauth/{providerConfigKey}", unauth.unauth, "Create an unauthenticated connection", "connect", PUBLIC
    ),
    Route(
        "POST",
        "/auth/unauthenticated/{providerConfigKey}",
        unauth.unauthenticated,
        "Create an unauthenticated connection (id optional)",
        "connect",
        PUBLIC,
    ),
    Route(
        "GET",
        "/connect/session",
        connect_sessions.get_connect_session,
        "Read a connect session",
        "connect-sessions",
        SESSION,
    ),
    Route(
        "DELETE",
        "/connect/session",
        connect_sessions.delete_connect_session,
        "End a connect session",
        "connect-sessions",
        SESSION,
    ),
    # the backend API (secret key)
    Route(
        "POST",
        "/connect/sessions",
        connect_sessions.create_connect_session,
        "Mint a connect session token",
        "connect-sessions",
        SECRET,
    ),
    Route("GET", "/config", config.list_integrations, "List integrations", "integrations", SECRET),
    Route("POST", "/config", config.create_integration, "Create an integration", "integrations", SECRET),
    Route("PUT", "/config", config.update_integration, "Update an integration", "integrations", SECRET),
    Route("GET", "/config/{providerConfigKey}", config.get_integration, "Get an integration", "integrations", SECRET),
    Route(
        "DELETE",
        "/config/{providerConfigKey}",
        config.delete_integration,
        "Delete an integration",
        "integrations",
        SECRET,
    ),
    Route("GET", "/provider", provider.list_providers, "The provider catalog", "providers", SECRET),
    Route("GET", "/provider/{provider}", provider.get_provider, "One provider template", "providers", SECRET),
    Route("GET", "/connection", connection.list_connections, "List connections (newest first)", "connections", SECRET),
    Route("POST", "/connection", connection_import.import_connection, "Import a connection", "connections", SECRET),
    Route("POST", "/connection/metadata", metadata.set_metadata, "Replace connection metadata", "connections", SECRET),
    Route(
        "PATCH",
        "/connection/metadata",
        metadata.update_metadata,
        "Merge into connection metadata",
        "connections",
        SECRET,
    ),
    Route(
        "GET",
        "/connection/{connectionId}",
        connection.get_connection,
        "A connection with its credentials (refreshed when due)",
        "connections",
        SECRET,
    ),
    Route(
        "DELETE",
        "/connection/{connectionId}",
        connection.delete_connection,
        "Delete a connection",
        "connections",
        SECRET,
    ),
    Route(
        "POST",
        "/connection/{connectionId}/metadata",
        metadata.legacy_set_metadata,
        "Replace metadata (legacy form)",
        "connections",
        SECRET,
    ),
    Route(
        "PATCH",
        "/connection/{connectionId}/metadata",
        metadata.legacy_update_metadata,
        "Merge metadata (legacy form)",
        "connections",
        SECRET,
    ),
    Route("GET", "/environment", environment.get_environment, "The environment's settings", "environment", SECRET),
    Route(
        "PATCH",
        "/environment",
        environment.patch_environment,
        "Change webhook, callback and HMAC settings",
        "environment",
        SECRET,
    ),
    Route(
        "POST",
        "/environment/rotate-key",
        keys.rotate_key,
        "Start a key rotation (a pending key)",
        "environment",
        SECRET,
    ),
    Route(
        "POST", "/environment/activate-key", keys.activate_key, "Make the pending key the key", "environment", SECRET
    ),
    Route("POST", "/environment/revert-key", keys.revert_key, "Drop the pending key", "environment", SECRET),
    *[
        Route(method, "/proxy/{path:.*}", proxy.proxy, "Call the connection's API, credentials added", "proxy", SECRET)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # GET brings HEAD
    ],
    *DASHBOARD_ROUTES,  # the dashboard's pages and /sdk/keyway-connect.js (auth_gateway/dashboard/routes.py)
]


def add_routes(app: web.Application) -> None:
    app.router.add_routes([web.route(r.method, r.path, r.handler) for r in ROUTES])

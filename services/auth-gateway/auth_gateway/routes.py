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
    connect_links,
    connect_sessions,
    connection,
    connection_import,
    environment,
    keys,
    logs,
    metadata,
    oauth,
    provider,
    proxy,
    revocation,
    status,
    unauth,
    webhooks,
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
    # connect links: the hosted page a whole tab visits (the token in the path is the capability)
    Route("GET", "/connect/link/{token}", connect_links.show_link, "A connect link's hosted page", "connect", NONE),
    Route(
        "POST",
        "/connect/link/{token}/connect/{providerConfigKey}",
        connect_links.submit_link,
        "Connect an API key or Basic integration from a connect link's page (form; 303 to the return URL)",
        "connect",
        NONE,
    ),
    Route(
        "POST",
        "/connect/link/{token}/cancel",
        connect_links.cancel_link,
        "Leave a connect link's page (303 to the return URL with error_type=user_cancelled)",
        "connect",
        NONE,
    ),
    # the backend API (secret key)
    Route(
        "POST",
        "/connect/links",
        connect_links.create_connect_link,
        "Mint a connect link (redirect mode: a hosted page, then back to return_url)",
        "connect-sessions",
        SECRET,
    ),
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
    Route(
        "POST",
        "/config/{providerConfigKey}/revoke",
        revocation.start_revocation_job,
        "Revoke every connection of an integration at the provider (a job; optionally delete them)",
        "integrations",
        SECRET,
    ),
    Route(
        "GET",
        "/config/{providerConfigKey}/revoke",
        revocation.get_revocation_job,
        "Progress of the latest (or ?job_id=) bulk revocation job",
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
    # outgoing webhooks: attempts, replays (commands to the dispatcher), signing keys, endpoint health
    Route(
        "GET",
        "/webhooks/deliveries",
        webhooks.list_deliveries,
        "Webhook delivery attempts, newest first (filters, cursor pages)",
        "webhooks",
        SECRET,
    ),
    Route(
        "GET",
        "/webhooks/deliveries/{deliveryId}",
        webhooks.get_delivery,
        "Every attempt of one delivery, replays included",
        "webhooks",
        SECRET,
    ),
    Route(
        "POST",
        "/webhooks/deliveries/{deliveryId}/replay",
        webhooks.replay_delivery,
        "Send one delivery again (202; the dispatcher does it)",
        "webhooks",
        SECRET,
    ),
    Route(
        "POST",
        "/webhooks/replay",
        webhooks.replay_failed,
        "Send again every delivery that gave up since a time (202)",
        "webhooks",
        SECRET,
    ),
    Route(
        "GET",
        "/webhooks/signing-keys",
        webhooks.list_signing_keys,
        "The Standard Webhooks signing keys (whsec_) that sign now",
        "webhooks",
        SECRET,
    ),
    Route(
        "POST",
        "/webhooks/signing-keys/rotate",
        webhooks.rotate_signing_key,
        "A new signing key; the old ones keep signing for a grace period (24 h)",
        "webhooks",
        SECRET,
    ),
    Route(
        "GET",
        "/webhooks/endpoints",
        webhooks.list_endpoints,
        "The webhook URLs and whether each is disabled",
        "webhooks",
        SECRET,
    ),
    Route(
        "POST",
        "/webhooks/endpoints/enable",
        webhooks.enable_endpoint,
        "Deliver to a disabled URL again",
        "webhooks",
        SECRET,
    ),
    # the activity log (read here; written by the activity-log service)
    Route(
        "GET",
        "/logs/operations",
        logs.list_log_operations,
        "Activity log operations, newest first (filters, free-text search, cursor pages)",
        "logs",
        SECRET,
    ),
    Route(
        "GET",
        "/logs/operations/{operationId}",
        logs.get_log_operation,
        "One activity log operation with its messages",
        "logs",
        SECRET,
    ),
    *[
        Route(method, "/proxy/{path:.*}", proxy.proxy, "Call the connection's API, credentials added", "proxy", SECRET)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # GET brings HEAD
    ],
    *DASHBOARD_ROUTES,  # the dashboard's pages and /sdk/keyway-connect.js (auth_gateway/dashboard/routes.py)
]


def add_routes(app: web.Application) -> None:
    app.router.add_routes([web.route(r.method, r.path, r.handler) for r in ROUTES])

"""The route table: a new route is a view plus one line here."""

from __future__ import annotations

from aiohttp import web

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
    status,
    unauth,
)
from .ws import websocket_or_index

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/", websocket_or_index),
            web.get("/health", status.health),
            web.get("/oauth/connect/{providerConfigKey}", oauth.oauth_connect),
            web.get("/oauth/callback", oauth.oauth_callback),
            web.get("/app-auth/connect", app_auth.app_auth_connect),
            # frontend SDK (public key)
            web.post("/api-auth/api-key/{providerConfigKey}", api_auth.api_key_auth),
            web.post("/api-auth/basic/{providerConfigKey}", api_auth.basic_auth),
            web.post("/oauth2/auth/{providerConfigKey}", client_credentials.client_credentials_auth),
            web.post("/app-store-auth/{providerConfigKey}", app_store.app_store_auth),
            web.post("/unauth/{providerConfigKey}", unauth.unauth),
            web.post("/auth/unauthenticated/{providerConfigKey}", unauth.unauthenticated),
            # backend API (secret key)
            web.get("/config", config.list_integrations),
            web.post("/config", config.create_integration),
            web.put("/config", config.update_integration),
            web.get("/config/{providerConfigKey}", config.get_integration),
            web.delete("/config/{providerConfigKey}", config.delete_integration),
            web.get("/connection", connection.list_connections),
            web.post("/connection", connection_import.import_connection),
            web.post("/connection/metadata", metadata.set_metadata),
            web.patch("/connection/metadata", metadata.update_metadata),
            web.get("/connection/{connectionId}", connection.get_connection),
            web.delete("/connection/{connectionId}", connection.delete_connection),
            web.post("/connection/{connectionId}/metadata", metadata.legacy_set_metadata),
            web.patch("/connection/{connectionId}/metadata", metadata.legacy_update_metadata),
            web.get("/provider", provider.list_providers),
            web.get("/provider/{provider}", provider.get_provider),
            web.get("/environment", environment.get_environment),
            web.post("/connect/sessions", connect_sessions.create_connect_session),
            web.get("/connect/session", connect_sessions.get_connect_session),
            web.delete("/connect/session", connect_sessions.delete_connect_session),
            web.patch("/environment", environment.patch_environment),
            web.post("/environment/rotate-key", keys.rotate_key),
            web.post("/environment/activate-key", keys.activate_key),
            web.post("/environment/revert-key", keys.revert_key),
        ]
    )

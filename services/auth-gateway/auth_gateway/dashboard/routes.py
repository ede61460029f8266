"""The dashboard's lines of the route table (``auth_gateway.routes`` splices them in), so they are
served and documented in ``/openapi.json`` like every other route."""

from __future__ import annotations

from ..openapi_spec import Answer, AuthKind, Route, json_answer, page, redirect
from .views import activity, assets, connections, integrations, settings, signin

__all__ = ["DASHBOARD_ROUTES"]

SESSION: AuthKind = "dashboard_session"
NONE: AuthKind = "none"
TAG = "dashboard"
E = "/dashboard/{env}"
SCRIPT, STYLES = Answer(200, "text/javascript"), Answer(200, "text/css")
SIGN_IN = (page(), redirect(303, "Signed in already, or signed in now: to the dashboard"))
CONNECTION = E + "/connections/{key}/{connection_id}"

DASHBOARD_ROUTES: list[Route] = [
    Route(
        "GET",
        "/sdk/keyway-connect.js",
        assets.connect_script,
        "Keyway's browser connect script",
        "connect",
        NONE,
        ok=SCRIPT,
    ),
    Route("GET", "/dashboard", signin.home, "The dashboard (redirects to Integrations)", TAG, NONE, ok=redirect(303)),
    Route(
        "GET",
        "/dashboard/static/{name}",
        assets.static_file,
        "Dashboard stylesheet and scripts",
        TAG,
        NONE,
        ok=(STYLES, SCRIPT),
        errors=(404,),
    ),
    Route(
        "GET",
        "/dashboard/signin",
        signin.signin_form,
        "Dashboard: sign-in form",
        TAG,
        NONE,
        ok=SIGN_IN,
        pages=True,
        errors=(404,),
    ),
    Route(
        "POST",
        "/dashboard/signin",
        signin.signin_submit,
        "Dashboard: sign in (form)",
        TAG,
        NONE,
        ok=SIGN_IN,
        errors=(401, 403, 404, 429),
        pages=True,
    ),
    Route("POST", "/dashboard/signout", signin.signout, "Dashboard: sign out", TAG, SESSION),
    Route("GET", E + "/integrations", integrations.integrations_page, "Dashboard: integrations", TAG, SESSION),
    Route(
        "POST", E + "/integrations", integrations.create_integration, "Dashboard: create an integration", TAG, SESSION
    ),
    Route("GET", E + "/catalog", integrations.catalog_page, "Dashboard: the provider catalog", TAG, SESSION),
    Route(
        "GET", E + "/catalog/{provider}", integrations.new_integration, "Dashboard: new integration form", TAG, SESSION
    ),
    Route("GET", E + "/integrations/{key}", integrations.integration_page, "Dashboard: one integration", TAG, SESSION),
    Route(
        "POST",
        E + "/integrations/{key}",
        integrations.update_integration,
        "Dashboard: edit an integration",
        TAG,
        SESSION,
    ),
    Route(
        "GET",
        E + "/integrations/{key}/delete",
        integrations.delete_confirm,
        "Dashboard: confirm deletion",
        TAG,
        SESSION,
    ),
    Route(
        "POST",
        E + "/integrations/{key}/delete",
        integrations.delete_integration,
        "Dashboard: delete an integration",
        TAG,
        SESSION,
    ),
    Route(
        "POST",
        E + "/integrations/{key}/connect-session",
        integrations.connect_session,
        "Dashboard: a connect session for the Connect button (JSON, X-CSRF-Token)",
        TAG,
        SESSION,
        ok=json_answer(),
        errors=(json_answer(400), json_answer(404)),
    ),
    Route("GET", E + "/connections", connections.connections_page, "Dashboard: connections", TAG, SESSION),
    Route("GET", CONNECTION, connections.connection_page, "Dashboard: one connection", TAG, SESSION),
    Route(
        "POST",
        CONNECTION + "/reveal",
        connections.reveal_credentials,
        "Dashboard: reveal a connection's credentials (logged)",
        TAG,
        SESSION,
    ),
    Route("GET", CONNECTION + "/delete", connections.delete_confirm, "Dashboard: confirm deletion", TAG, SESSION),
    Route(
        "POST", CONNECTION + "/delete", connections.delete_connection, "Dashboard: delete a connection", TAG, SESSION
    ),
    Route("GET", E + "/activity", activity.activity_page, "Dashboard: activity", TAG, SESSION),
    Route("GET", E + "/activity/{operation_id}", activity.operation_page, "Dashboard: one operation", TAG, SESSION),
    Route("GET", E + "/settings", settings.settings_page, "Dashboard: environment settings", TAG, SESSION),
    Route("POST", E + "/settings", settings.save_settings, "Dashboard: save a settings section", TAG, SESSION),
    Route("POST", E + "/settings/reveal", settings.reveal_secret, "Dashboard: reveal a secret (logged)", TAG, SESSION),
    Route(
        "POST", E + "/settings/keys", settings.change_key, "Dashboard: rotate, activate or revert a key", TAG, SESSION
    ),
    Route(
        "POST",
        E + "/settings/webhook-keys/rotate",
        settings.rotate_webhook_key,
        "Dashboard: rotate the webhook signing key",
        TAG,
        SESSION,
    ),
    Route(
        "POST",
        E + "/settings/webhook-signing-key/rotate",
        settings.rotate_webhook_signing_key,
        "Dashboard: rotate the Nango webhook signing key (X-Nango-Hmac-Sha256)",
        TAG,
        SESSION,
    ),
    Route(
        "POST",
        E + "/settings/endpoints/enable",
        settings.enable_endpoint,
        "Dashboard: deliver to a disabled webhook URL again",
        TAG,
        SESSION,
    ),
    Route(
        "POST",
        E + "/settings/deliveries/replay",
        settings.replay_delivery,
        "Dashboard: replay a webhook delivery",
        TAG,
        SESSION,
    ),
]

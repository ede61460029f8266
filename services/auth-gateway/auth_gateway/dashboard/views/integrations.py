"""Integrations: the list, the catalog to create one from, one integration's page (edit, connect,
its connections), and deletion with confirmation."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from keyway_shared.service import MONGO_DB
from keyway_shared.store import Integration

from ...http.errors import ApiError
from ...http.requests import json_object
from ...operations.environment import callback_url
from ...resources import CATALOG, STORES
from .. import api
from ..catalog import CONNECT_KIND, CREDENTIAL_FIELDS, credential_fields, integration_needs, param_fields, search
from ..pages import Page, page
from ..queries import ConnectionFilters, connection_counts, list_connections

__all__ = [
    "catalog_page",
    "connect_session",
    "create_integration",
    "delete_confirm",
    "delete_integration",
    "integration_page",
    "integrations_page",
    "new_integration",
    "update_integration",
]


@page
async def integrations_page(page: Page) -> web.StreamResponse:
    integrations = await page.app[STORES].integrations.list(page.env.name)
    counts = await connection_counts(page.app[MONGO_DB], page.env.name)
    catalog = page.app[CATALOG]
    rows = [
        {"integration": i, "template": catalog.get(i.provider), "connections": counts.get(i.unique_key, 0)}
        for i in integrations
    ]
    return page.render("integrations.html", section="integrations", rows=rows)


@page
async def catalog_page(page: Page) -> web.StreamResponse:
    query = page.request.query.get("q", "").strip()[:100]
    entries = search(page.app[CATALOG], query)
    return page.render("catalog.html", section="integrations", q=query, entries=entries)


def _form_fields(page: Page, provider: str) -> dict[str, Any]:
    """The ``POST /config`` body from the form."""
    body: dict[str, Any] = {"provider": provider, "provider_config_key": page.field("unique_key")}
    for name, field in (
        ("oauth_client_id", "client_id"),
        ("oauth_client_secret", "client_secret"),
        ("oauth_scopes", "scopes"),
        ("app_link", "app_link"),
    ):
        if page.field(field):
            body[name] = page.field(field)
    custom = {name: page.field(name) for name in ("app_id", "private_key") if page.field(name)}
    if custom:
        body["custom"] = custom
    return body


async def _suggest_key(page: Page, provider: str) -> str:
    existing = {i.unique_key for i in await page.app[STORES].integrations.list(page.env.name)}
    if provider not in existing:
        return provider
    return f"{provider}-{secrets.token_hex(2)}"


def _new_form(page: Page, provider: str, *, values: dict[str, str], error: str | None, status: int) -> web.Response:
    template = page.app[CATALOG].get(provider)
    if template is None:
        return page.render(
            "message.html", status=404, title="Not found", text=f"The provider '{provider}' is not in the catalog."
        )
    return page.render(
        "integration_new.html",
        section="integrations",
        provider=provider,
        template=template,
        needs=integration_needs(template),
        callback_url=callback_url(page.request.app, page.env),
        values=values,
        error=error,
        status=status,
    )


@page
async def new_integration(page: Page) -> web.StreamResponse:
    provider = page.request.match_info["provider"]
    template = page.app[CATALOG].get(provider)
    values = {
        "unique_key": await _suggest_key(page, provider),
        "scopes": ",".join(template.default_scopes) if template else "",
    }
    return _new_form(page, provider, values=values, error=None, status=200)


@page
async def create_integration(page: Page) -> web.StreamResponse:
    provider = page.field("provider")
    try:
        key = await api.create_integration(page.request, page.env, _form_fields(page, provider))
    except ApiError as err:
        values = {k: page.field(k) for k in ("unique_key", "client_id", "scopes", "app_link", "app_id")}
        return _new_form(page, provider, values=values, error=err.message or err.code, status=err.status)
    return page.redirect("integrations", key, notice="integration_created")


async def _integration(page: Page) -> Integration | None:
    return await page.app[STORES].integrations.get(page.env.name, page.request.match_info["key"])


def _not_found(page: Page) -> web.Response:
    key = page.request.match_info.get("key", "")
    return page.render("message.html", status=404, title="Not found", text=f"There is no integration '{key}' here.")


async def _integration_view(
    page: Page, integration: Integration, *, error: str | None = None, status: int = 200
) -> web.Response:
    template = page.app[CATALOG].get(integration.provider)
    connections = await list_connections(
        page.app[MONGO_DB], page.env.name, ConnectionFilters(integration=integration.unique_key)
    )
    mode = template.auth_mode if template else ""
    return page.render(
        "integration.html",
        section="integrations",
        integration=integration,
        template=template,
        needs=integration_needs(template) if template else None,
        callback_url=callback_url(page.request.app, page.env),
        connect_kind=CONNECT_KIND.get(mode),
        credential_fields=credential_fields(template) if template else [],
        # The SDK routes a form by its credentials' type when the template names the fields.
        credentials_type=mode
        if template and mode not in CREDENTIAL_FIELDS and CONNECT_KIND.get(mode) == "credentials"
        else None,
        params=param_fields(template) if template else [],
        suggested_connection_id=f"test-{secrets.token_hex(3)}",
        connections=connections,
        error=error,
        status=status,
    )


@page
async def integration_page(page: Page) -> web.StreamResponse:
    integration = await _integration(page)
    if integration is None:
        return _not_found(page)
    return await _integration_view(page, integration)


@page
async def update_integration(page: Page) -> web.StreamResponse:
    integration = await _integration(page)
    if integration is None:
        return _not_found(page)
    fields = _form_fields(page, integration.provider) | {"provider_config_key": integration.unique_key}
    # A blank secret keeps the current one: the form never shows it.
    fields.setdefault("oauth_client_secret", integration.oauth_client_secret)
    if "custom" in fields or integration.custom:
        fields["custom"] = {**integration.custom, **fields.get("custom", {})}
    try:
        await api.update_integration(page.request, page.env, fields)
    except ApiError as err:
        return await _integration_view(page, integration, error=err.message or err.code, status=err.status)
    return page.redirect("integrations", integration.unique_key, notice="integration_updated")


@page
async def delete_confirm(page: Page) -> web.StreamResponse:
    integration = await _integration(page)
    if integration is None:
        return _not_found(page)
    counts = await connection_counts(page.app[MONGO_DB], page.env.name)
    return page.render(
        "confirm.html",
        section="integrations",
        title=f"Delete the integration {integration.unique_key}?",
        text=(
            f"Its {counts.get(integration.unique_key, 0)} connection(s) stay in the database but can no longer "
            "be refreshed or used through the proxy. This cannot be undone."
        ),
        action=page.url("integrations", integration.unique_key, "delete"),
        confirm_label="Delete integration",
        cancel_url=page.url("integrations", integration.unique_key),
    )


@page
async def delete_integration(page: Page) -> web.StreamResponse:
    key = page.request.match_info["key"]
    if not await api.delete_integration(page.request, page.env, key):
        return _not_found(page)
    return page.redirect("integrations", notice="integration_deleted")


@page
async def connect_session(page: Page) -> web.StreamResponse:
    """``POST .../connect-session`` (JSON ``{"connection_id"}``, CSRF header): a token for one Connect
    button press, fixed to the connection id the admin typed."""
    try:
        body = await json_object(page.request, required=False)
        connection_id = body.get("connection_id")
        if not isinstance(connection_id, str) or not 0 < len(connection_id.strip()) <= 255:
            raise ApiError("invalid_body", "Give the connection id (1 to 255 characters).")
        token = await api.mint_connect_session(
            page.request, page.env, page.request.match_info["key"], connection_id.strip()
        )
    except ApiError as err:
        return web.json_response({"error": {"code": err.code, "message": err.message}}, status=err.status)
    return web.json_response({"token": token})

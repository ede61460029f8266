"""Connections: the list with search and filters, one connection's page (secrets hidden until
revealed, each reveal an activity entry), and deletion with confirmation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.service import MONGO_DB

from ...resources import CATALOG, STORES
from .. import api
from ..activity import activity_filter, list_operations
from ..catalog import CONNECT_KIND
from ..pages import Page, page
from ..queries import HEALTH_FILTERS, ConnectionFilters, list_connections, row_of

__all__ = ["connection_page", "connections_page", "delete_confirm", "delete_connection", "reveal_credentials"]

# Credential fields that describe rather than grant: shown without a reveal.
_DESCRIPTIVE = {"type", "expires_at", "token_type", "scope", "scopes"}


@page
async def connections_page(page: Page) -> web.StreamResponse:
    query = page.request.query
    filters = ConnectionFilters(
        q=query.get("q", "").strip()[:200],
        integration=query.get("integration", ""),
        auth_mode=query.get("auth_mode", ""),
        health=query.get("health", "") if query.get("health", "") in HEALTH_FILTERS else "",
    )
    rows = await list_connections(page.app[MONGO_DB], page.env.name, filters)
    integrations = await page.app[STORES].integrations.list(page.env.name)
    return page.render(
        "connections.html",
        section="connections",
        rows=rows,
        filters=filters,
        integrations=integrations,
        auth_modes=sorted(CONNECT_KIND),
        health_filters=HEALTH_FILTERS,
    )


def _not_found(page: Page) -> web.Response:
    return page.render("message.html", status=404, title="Not found", text="There is no such connection here.")


def _masked(credentials: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(name, shown value, is secret) for each credential field; secret values are not sent at all."""
    out: list[tuple[str, str, bool]] = []
    for name, value in sorted(credentials.items()):
        if name in _DESCRIPTIVE:
            out.append((name, str(value), False))
        else:
            out.append((name, "", True))
    return out


async def _connection_view(page: Page, *, revealed: bool) -> web.StreamResponse:
    key, connection_id = page.request.match_info["key"], page.request.match_info["connection_id"]
    doc = await page.app[MONGO_DB]["connections"].find_one(
        {"environment": page.env.name, "provider_config_key": key, "connection_id": connection_id}
    )
    if doc is None:
        return _not_found(page)
    connection = page.app[STORES].connections.from_doc(doc)
    row = row_of(doc)
    if revealed:
        await api.log_activity(
            page.request,
            page.env,
            operation_type="admin:reveal_credentials",
            message=f"Credentials revealed in the dashboard by {page.session.user}",
            provider_config_key=key,
            provider=connection.provider,
            connection_id=connection_id,
        )
    recent = await list_operations(
        page.app[MONGO_DB], activity_filter(page.env.name, integration=key, connection=connection_id), limit=10
    )
    document = connection.credentials.dump()  # shown as stored, fields the types do not know included
    return page.render(
        "connection.html",
        section="connections",
        connection=connection,
        row=row,
        doc=doc,
        template=page.app[CATALOG].get(connection.provider),
        credential_type=document.get("type", connection.auth_mode),
        credentials=_masked(document),
        revealed_credentials=document if revealed else None,
        operations=recent.operations,
    )


@page
async def connection_page(page: Page) -> web.StreamResponse:
    return await _connection_view(page, revealed=False)


@page
async def reveal_credentials(page: Page) -> web.StreamResponse:
    return await _connection_view(page, revealed=True)


@page
async def delete_confirm(page: Page) -> web.StreamResponse:
    key, connection_id = page.request.match_info["key"], page.request.match_info["connection_id"]
    return page.render(
        "confirm.html",
        section="connections",
        title=f"Delete the connection {connection_id}?",
        text=(
            f"The credentials of {connection_id} ({key}) are deleted; the app must connect again to use it. "
            "Its tokens are revoked at the provider first only when the integration's revoke_on_delete "
            "is on (and the provider offers revocation). "
            "A connection.deleted event is sent. This cannot be undone."
        ),
        action=page.url("connections", key, connection_id, "delete"),
        confirm_label="Delete connection",
        cancel_url=page.url("connections", key, connection_id),
    )


@page
async def delete_connection(page: Page) -> web.StreamResponse:
    key, connection_id = page.request.match_info["key"], page.request.match_info["connection_id"]
    removal = await api.delete_connection(page.request, page.env, key, connection_id)
    if removal is None:
        return _not_found(page)
    notice = "connection_deleted"
    if removal.revocation is not None:
        notice = "connection_revoked" if removal.revocation.status == "revoked" else "connection_revoke_failed"
    return page.redirect("connections", notice=notice)

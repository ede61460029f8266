"""Xero: the tenant (organisation) the connection is for.

``/connections`` lists every tenant the app may reach for this user, also those connected earlier.
With several, the ones this authorization added carry the access token's
``authentication_event_id`` as their ``authEventId``: the first of them is the connection's.
"""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("connections")
    tenants = [t for t in answer if isinstance(t, dict) and t.get("tenantId")] if isinstance(answer, list) else []
    if not tenants:
        raise EnrichmentError("Xero lists no tenant for this token")
    if len(tenants) == 1:
        return {"tenant_id": tenants[0]["tenantId"]}
    event = ctx.access_token_claims().get("authentication_event_id")
    if not event:
        raise EnrichmentError("several Xero tenants, and the access token names no authentication event")
    for tenant in tenants:
        if tenant.get("authEventId") == event:
            return {"tenant_id": tenant["tenantId"]}
    raise EnrichmentError("several Xero tenants, none from this authorization")

"""Adobe User Management API: the client id the connection was made with, which its calls repeat
in an ``x-api-key`` header."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    client_id = ctx.credentials.dump().get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise EnrichmentError("the credentials name no client id")
    return {"clientId": client_id}

"""HighLevel: the company and location the token was issued for, from the token answer (an agency
token has no location)."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    raw = ctx.token_response()
    given = {name: raw.get(name) for name in ("companyId", "locationId")}
    fields = {name: value.strip() for name, value in given.items() if isinstance(value, str) and value.strip()}
    if not fields:
        raise EnrichmentError("the token answer names neither a company nor a location")
    return fields

"""Candis: the organization the token belongs to."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("v1/organizations/info")
    organization = answer.get("id") if isinstance(answer, dict) else None
    if not organization:
        raise EnrichmentError("Candis names no organization for this token")
    return {"organizationId": organization}

"""Procore: the first company the user belongs to, unless the user named one."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    if ctx.given("companyId"):
        return {}
    answer = await ctx.request("/rest/v1.0/companies")
    first = answer[0] if isinstance(answer, list) and answer and isinstance(answer[0], dict) else None
    if first is None or not first.get("id"):
        raise EnrichmentError("Procore lists no company for this user")
    return {"companyId": str(first["id"])}

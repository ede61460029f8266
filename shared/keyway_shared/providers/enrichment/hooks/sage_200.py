"""Sage 200: the company and site the token reaches (one site, or the first of a list)."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("/accounts/v1/sites")
    site = answer[0] if isinstance(answer, list) and answer else answer
    if not isinstance(site, dict) or site.get("company_id") is None or not site.get("site_id"):
        raise EnrichmentError("Sage 200 lists no site for this token")
    return {"company_id": str(site["company_id"]), "site_id": site["site_id"]}

"""Sellsy: the company (``corpid``) the token was issued for, from its ``corpId`` claim."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    corp = ctx.access_token_claims().get("corpId")
    if isinstance(corp, bool) or not isinstance(corp, int) or not corp:
        raise EnrichmentError("the access token has no corpId claim")
    return {"corpid": corp}

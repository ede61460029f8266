"""Checkr (partner): whether the account has the hierarchy of nodes enabled, which the nodes
endpoint answers only when it is (the partner API takes the token as a Basic user name)."""

from __future__ import annotations

import base64
from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    token = ctx.access_token()
    if not token:
        raise EnrichmentError("the connection holds no access token")
    basic = "Basic " + base64.b64encode(f"{token}:".encode()).decode()
    try:
        await ctx.request("/v1/nodes", query={"page": "1", "per_page": "1"}, authorization=basic)
    except EnrichmentError:
        return {"accountHierarchyEnabled": False}
    return {"accountHierarchyEnabled": True}

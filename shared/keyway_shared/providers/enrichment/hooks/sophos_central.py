"""Sophos Central: the tenant the client credentials belong to and its data region, from
``whoami`` on the global API (the region decides the host of every later call)."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("/whoami/v1", base_url_override="https://api.central.sophos.com")
    hosts = answer.get("apiHosts") if isinstance(answer, dict) else None
    region = hosts.get("dataRegion") if isinstance(hosts, dict) else None
    if not isinstance(answer, dict) or not answer.get("id") or not region:
        raise EnrichmentError("Sophos's whoami names no tenant and data region")
    return {"tenantId": answer["id"], "dataRegion": region}

"""Rippling (app shop): the app is marked installed, as Rippling asks of an app once it holds its
token; nothing is filled."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    await ctx.request("/platform/api/mark_app_installed", method="POST")
    return {}

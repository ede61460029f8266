"""Bullhorn: the user name and password its authorization step takes from the connection
configuration are dropped once the connection is made (None unsets a field)."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    if ctx.given("username") and ctx.given("password"):
        return {"username": None, "password": None}
    return {}

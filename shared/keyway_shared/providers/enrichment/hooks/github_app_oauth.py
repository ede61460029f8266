"""GitHub App with user authorization: the user's login (``handle``).

Nango also copies the user's OAuth credentials into the connection configuration; Keyway does not:
the configuration is not encrypted and is answered wherever the connection is, and the user's
token is already the connection's credentials."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("/user")
    login = answer.get("login") if isinstance(answer, dict) else None
    if not isinstance(login, str) or not login:
        raise EnrichmentError("GitHub's /user has no login")
    return {"handle": login}

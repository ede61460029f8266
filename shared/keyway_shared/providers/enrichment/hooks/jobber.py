"""Jobber: the account the token belongs to, from its GraphQL API."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("/graphql", method="POST", body={"query": "{ account { id } }"})
    data = answer.get("data") if isinstance(answer, dict) else None
    account = data.get("account") if isinstance(data, dict) else None
    if not isinstance(account, dict) or not account.get("id"):
        raise EnrichmentError("Jobber's GraphQL answer has no account id")
    return {"accountId": account["id"]}

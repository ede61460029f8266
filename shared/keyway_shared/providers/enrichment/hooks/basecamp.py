"""Basecamp: the accounts the user may reach, and the account itself when there is only one and
the user named none (the proxy's base URL needs it)."""

from __future__ import annotations

from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    # Launchpad, where the token came from, knows the accounts.
    origin = ctx.token_origin() or "https://launchpad.37signals.com"
    answer = await ctx.request("/authorization.json", base_url_override=origin)
    accounts = answer.get("accounts") if isinstance(answer, dict) else None
    if not isinstance(accounts, list):
        raise EnrichmentError("Basecamp's authorization answer lists no accounts")
    fields: dict[str, Any] = {"accounts": accounts}
    only = accounts[0] if len(accounts) == 1 and isinstance(accounts[0], dict) else None
    if not ctx.given("accountId") and only is not None and only.get("id"):
        fields["accountId"] = only["id"]
    return fields

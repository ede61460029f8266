"""Zoho: the data centre's domain extension (``eu``, ``com.au``) from the token answer's ``api_domain``
(``https://www.zohoapis.eu``), unless the user gave one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]

_MARKER = "zohoapis."


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    if ctx.given("extension"):
        return {}
    domain = ctx.connection_config.get("api_domain") or ctx.token_response().get("api_domain")
    if not isinstance(domain, str) or not domain:
        raise EnrichmentError("the token answer has no api_domain to read the data centre from")
    host = urlsplit(domain if "://" in domain else f"https://{domain}").hostname or ""
    _, found, extension = host.partition(_MARKER)
    if not found or not extension:
        raise EnrichmentError("the token answer's api_domain is not a zohoapis host")
    return {"extension": extension}

"""Sentry (integration platform): the installation is confirmed (``status: installed``), as Sentry
requires of an app once it holds its token; then the connection is no longer pending."""

from __future__ import annotations

import re
from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["post_connection"]

_UUID = re.compile(r"[A-Za-z0-9-]+")


async def post_connection(ctx: EnrichmentContext) -> dict[str, Any]:
    installation = str(ctx.connection_config.get("installation.uuid") or "")
    if not _UUID.fullmatch(installation):
        raise EnrichmentError("the connection has no installation.uuid to confirm")
    answer = await ctx.request(
        f"/{installation}/",
        method="PUT",
        base_url_override="https://sentry.io/api/0/sentry-app-installations",
        body={"status": "installed"},
    )
    if not isinstance(answer, dict) or answer.get("status") != "installed":
        raise EnrichmentError("Sentry did not confirm the installation")
    return {"pending": None} if "pending" in ctx.connection_config else {}

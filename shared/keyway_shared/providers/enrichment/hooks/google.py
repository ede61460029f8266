"""Google Calendar and Gmail: a pseudonym of the user's address (``emailAddressHash``), which
Nango's Gmail webhook routing matches notifications by; never the address itself.

The hash is Nango's (SHA-256 of ``nango.emailAddressHash.v1:`` and the trimmed, lower-cased
address), so connections imported from Nango keep matching."""

from __future__ import annotations

import hashlib
from typing import Any

from ..context import EnrichmentContext, EnrichmentError

__all__ = ["calendar", "email_address_hash", "mail"]

_CONTEXT = "nango.emailAddressHash.v1"


def email_address_hash(address: str) -> str:
    return hashlib.sha256(f"{_CONTEXT}:{address.strip().lower()}".encode()).hexdigest()


async def calendar(ctx: EnrichmentContext) -> dict[str, Any]:
    # The primary calendar's id is the user's address.
    answer = await ctx.request("/calendar/v3/users/me/calendarList/primary")
    address = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(address, str) or not address:
        raise EnrichmentError("the primary calendar has no id")
    return {"emailAddressHash": email_address_hash(address)}


async def mail(ctx: EnrichmentContext) -> dict[str, Any]:
    answer = await ctx.request("/gmail/v1/users/me/profile")
    address = answer.get("emailAddress") if isinstance(answer, dict) else None
    if not isinstance(address, str) or not address:
        raise EnrichmentError("the Gmail profile has no address")
    return {"emailAddressHash": email_address_hash(address)}

"""Deleting a connection, as the backend API and the dashboard both do it.

Deleting deletes, as Nango does; revoking the grant at the provider is asked for (``?revoke=true``)
or is the integration's setting (``revoke_on_delete``), never the default. Revoking is not local to
one connection: a Google or Microsoft grant revoked ends every token of that user and OAuth client,
the app's other connections of the same account included. When revocation is asked for, the grant
is revoked first (when the provider's template says how), then the connection is deleted here
whatever the provider answered, with its ``connection.deleted`` event in the same transaction.
One function, so a connection deleted from the dashboard leaves no more behind than one deleted
with the secret key.

A deletion that keeps losing write conflicts is tried again after a capped, jittered backoff while
the request's deadline allows (``ConnectionStore.delete_with_event``), then answers 503; it is
acknowledged like any connection write (``operations.connections.written_and_announced``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from keyway_shared.service import MONGO_DB

from ..http.idempotency.claims import removal_claim
from ..resources import STORES
from .connection_events import deleted_event
from .connections import written_and_announced
from .token_revocation import Revocation, revoke_connection

__all__ = [
    "REVOKE_ON_DELETE",
    "Removal",
    "remove_connection",
    "revoke_asked",
    "revokes_on_delete",
    "set_revoke_on_delete",
]

# The integration's setting, a field of its document of its own: the integration store's writes
# ($set of the fields it knows) leave it as it is.
REVOKE_ON_DELETE = "revoke_on_delete"


@dataclass(frozen=True)
class Removal:
    revocation: Revocation | None  # None: nothing to revoke, or revocation not asked for


def revoke_asked(request: web.Request) -> bool | None:
    """``?revoke=true`` or ``?revoke=false``; None (the integration decides) when it says neither."""
    return {"true": True, "false": False}.get(request.query.get("revoke", ""))


async def revokes_on_delete(app: web.Application, environment: str, provider_config_key: str) -> bool:
    """Whether the integration revokes its connections' grants when one is deleted (off unless set)."""
    doc = await app[MONGO_DB]["integrations"].find_one(
        {"environment": environment, "unique_key": provider_config_key}, {REVOKE_ON_DELETE: 1}
    )
    return bool(doc and doc.get(REVOKE_ON_DELETE) is True)


async def set_revoke_on_delete(app: web.Application, environment: str, provider_config_key: str, on: bool) -> bool:
    """Turn the integration's setting on or off; False when there is no such integration."""
    result = await app[MONGO_DB]["integrations"].update_one(
        {"environment": environment, "unique_key": provider_config_key}, {"$set": {REVOKE_ON_DELETE: on}}
    )
    return result.matched_count == 1


async def remove_connection(
    app: web.Application,
    environment: str,
    provider_config_key: str,
    connection_id: str,
    *,
    revoke: bool | None = None,
) -> Removal | None:
    """Revoke when asked (``revoke``; None: as the integration's ``revoke_on_delete`` says), then
    delete; None when there is no such connection."""
    claim = removal_claim(environment, connection_id)
    if claim is not None and claim.removed_before(provider_config_key):
        # This request's Idempotency-Key removed it already, and that attempt's answer was lost.
        before = claim.revocation_before
        return Removal(revocation=None if before is None else Revocation(**before))
    revocation = None
    if revoke is None:
        revoke = await revokes_on_delete(app, environment, provider_config_key)
    if revoke:
        existing = await app[STORES].connections.get(environment, provider_config_key, connection_id)
        if existing is None:
            return None
        revocation = await revoke_connection(app, existing)
    result = await app[STORES].connections.delete_with_event(
        environment,
        provider_config_key,
        connection_id,
        deleted_event,
        also=None if claim is None else claim.marker(provider_config_key, revocation.as_json() if revocation else None),
    )
    if result is None:
        return None
    await written_and_announced(app, result[1], (environment, provider_config_key, connection_id))
    return Removal(revocation=revocation)

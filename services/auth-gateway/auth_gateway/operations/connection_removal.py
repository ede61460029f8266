"""Deleting a connection, as the backend API and the dashboard both do it.

The provider's grant is revoked first (when its template says how), then the connection is deleted
here whatever the provider answered, with its ``connection.deleted`` event in the same transaction.
One function, so a connection deleted from the dashboard leaves no more behind than one deleted
with the secret key.

A deletion that keeps losing write conflicts is tried again after a capped, jittered backoff while
the request's deadline allows (``ConnectionStore.delete_with_event``), then answers 503; it is
acknowledged like any connection write (``operations.connections.written_and_announced``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..http.idempotency.claims import removal_claim
from ..resources import STORES
from .connection_events import deleted_event
from .connections import written_and_announced
from .token_revocation import Revocation, revoke_connection

__all__ = ["Removal", "remove_connection"]


@dataclass(frozen=True)
class Removal:
    revocation: Revocation | None  # None: nothing to revoke, or revocation not asked for


async def remove_connection(
    app: web.Application, environment: str, provider_config_key: str, connection_id: str, *, revoke: bool = True
) -> Removal | None:
    """Revoke (unless told not to), then delete; None when there is no such connection."""
    claim = removal_claim(environment, connection_id)
    if claim is not None and claim.removed_before(provider_config_key):
        # This request's Idempotency-Key removed it already, and that attempt's answer was lost.
        before = claim.revocation_before
        return Removal(revocation=None if before is None else Revocation(**before))
    revocation = None
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

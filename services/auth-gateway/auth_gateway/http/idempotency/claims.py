"""A request's claim on its ``Idempotency-Key``, and giving the key back when no answer is kept.

The claim is the store's (``request_outcomes``, the shared library's ``RequestOutcomeStore``): one
holder per key at a time, under a lease that frees the key should the holder die. The connection
deletion the request runs reads the claim too (``removal_claim``), to write in its own transaction
that this key removed that connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pymongo
from aiohttp import web
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from keyway_shared.backoff import Backoff
from keyway_shared.logging import get_logger
from keyway_shared.service import CIPHER, MONGO_DB
from keyway_shared.store import RequestOutcomeStore, StoredAnswer
from keyway_shared.store.request_outcomes import DEFAULT_LEASE

__all__ = ["CURRENT_CLAIM", "ActiveClaim", "Outcomes", "removal_claim"]

log = get_logger(__name__)

_RELEASE_WAIT_SECONDS = 1.0  # a retry sent as soon as a 5xx arrives finds the key free (a healthy write: ms)
_BOOKKEEPING_SECONDS = 10.0  # a release or a late store gives up after this; the lease is the last resort
# One release try: a healthy update takes milliseconds, so a try still waiting after a second is on a
# dead socket; leaving it then lets the next try reach a database that is back, before the client's
# retry has waited out its patience for the key (``middleware.IN_FLIGHT_WAIT_SECONDS``).
_RELEASE_TRY_SECONDS = 1.0


@dataclass(kw_only=True)
class ActiveClaim:
    """This request's claim on its key (the connection deletion it runs reads it too)."""

    store: RequestOutcomeStore
    environment: str
    key: str
    holder: str
    method: str
    connection_id: str | None  # the route's, when it names one
    removal: dict[str, Any] | None  # what an earlier attempt with this key removed

    def removed_before(self, provider_config_key: str) -> bool:
        earlier = self.removal or {}
        return (earlier.get("provider_config_key"), earlier.get("connection_id")) == (
            provider_config_key,
            self.connection_id,
        )

    @property
    def revocation_before(self) -> dict[str, Any] | None:
        return (self.removal or {}).get("revocation")

    def marker(
        self, provider_config_key: str, revocation: dict[str, Any] | None
    ) -> Callable[[AsyncClientSession], Awaitable[None]]:
        """What the deletion's transaction writes beside the deletion: this key removed this connection."""
        marker: dict[str, Any] = {
            "provider_config_key": provider_config_key,
            "connection_id": self.connection_id,
            "revocation": revocation,  # the first answer told it: so does the retry's
        }

        async def write(session: AsyncClientSession) -> None:
            await self.store.mark_removal(self.environment, self.key, marker, session=session)

        return write


# The claim of the request being answered now, set by the middleware around its view.
CURRENT_CLAIM: contextvars.ContextVar[ActiveClaim | None] = contextvars.ContextVar("idempotency_claim", default=None)


def removal_claim(environment: str, connection_id: str) -> ActiveClaim | None:
    """The claim of the ``DELETE`` of this connection being answered now, if it came with a key.

    Tasks a request starts inherit its context (a bulk revocation job): the method and the route's
    connection id keep their deletions out of it.
    """
    claim = CURRENT_CLAIM.get()
    if claim is None or claim.method != "DELETE" or claim.environment != environment:
        return None
    return claim if claim.connection_id == connection_id else None


@dataclass(eq=False)
class _PendingRelease:
    """A claim whose attempt has ended, being given back in the background."""

    claim: ActiveClaim
    landed: bool = False  # released, by its own task or by a retry of this replica


class Outcomes:
    """The middleware's store (opened on the first keyed request), and its bookkeeping off the request.

    Releasing a claim, or storing an answer again after a failed try, runs in a task with a context of
    its own: the request's database deadline (PyMongo's, in context variables) may be spent by then,
    and a shutdown or a deadline may be cancelling the request itself.
    """

    def __init__(self) -> None:
        self._store: RequestOutcomeStore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._releasing: dict[tuple[str, str], list[_PendingRelease]] = {}

    def store(self, app: web.Application) -> RequestOutcomeStore:
        if self._store is None:
            self._store = RequestOutcomeStore(app[MONGO_DB], app[CIPHER])
        return self._store

    def _detached(
        self,
        work: Callable[[], Awaitable[object]],
        failure: str,
        environment: str,
        *,
        seconds: float = _BOOKKEEPING_SECONDS,
    ) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                with pymongo.timeout(seconds):  # the driver's deadline: see _release_until_lease_ends
                    await work()
            except PyMongoError as exc:  # the lease frees the key in the end
                log.warning(failure, environment=environment, error=type(exc).__name__)

        task = asyncio.create_task(run(), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def release(self, claim: ActiveClaim) -> None:
        """Free the key for the next attempt; the answer waits a moment for it, not for an outage."""
        await asyncio.wait({self.release_soon(claim)}, timeout=_RELEASE_WAIT_SECONDS)

    def release_soon(self, claim: ActiveClaim) -> asyncio.Task[None]:
        pending = _PendingRelease(claim)
        held = self._releasing.setdefault((claim.environment, claim.key), [])
        held.append(pending)
        task = self._detached(
            lambda: _release_until_lease_ends(pending),
            "could not release an idempotency claim",
            claim.environment,
            seconds=DEFAULT_LEASE.total_seconds(),
        )
        task.add_done_callback(lambda _: self._forget(pending))
        return task

    def _forget(self, pending: _PendingRelease) -> None:
        at = (pending.claim.environment, pending.claim.key)
        held = self._releasing.get(at, [])
        if pending in held:
            held.remove(pending)
        if not held:
            self._releasing.pop(at, None)

    async def free_ended_attempts(self, environment: str, key: str) -> bool:
        """Release now, on the caller's database link, what this replica's ended attempts still hold.

        A retry that finds its key in flight calls this. When the holder is an attempt of this
        replica that has already answered (a 503 during a database outage), its release may be
        stuck on a dead socket or sleeping between tries, while the retry's own link has just been
        answered: the retry need not wait for that release, nor be told 409 about an attempt that is
        over. A release matches only its own holder, so it never frees a live attempt's claim.
        """
        freed = False
        for pending in list(self._releasing.get((environment, key), ())):
            if pending.landed:
                continue
            try:
                pending.landed = await pending.claim.store.release(environment, key, pending.claim.holder)
            except PyMongoError:  # the retry waits for the background release, as before
                continue
            freed = freed or pending.landed
        return freed

    async def complete(self, claim: ActiveClaim, answer: StoredAnswer) -> None:
        try:
            await claim.store.complete(claim.environment, claim.key, claim.holder, answer)
        except PyMongoError:  # e.g. the request's deadline spent: once more, on a deadline of its own
            self._detached(
                lambda: claim.store.complete(claim.environment, claim.key, claim.holder, answer),
                "could not store an idempotent answer",
                claim.environment,
            )


async def _release_until_lease_ends(pending: _PendingRelease) -> None:
    """Release the claim, trying again until it is released or its lease would free the key anyway.

    A claim sent while the database link was blackholed may land only once the link heals, after a
    first release failed or found nothing to release: without more tries, every retry of the
    request would be told 409 "in flight" for the rest of the lease. A claim that never lands costs
    a few no-op updates. The tries are short and close together: a retry the client sends after
    its 503 waits for this release (``middleware.IN_FLIGHT_WAIT_SECONDS``), so it should land
    within a second of the database answering again.

    Each try ends at the driver's own deadline (CSOT), never by cancelling it: on Python 3.11 a
    cancellation that lands while the driver waits in server selection can leave its topology lock
    released by the wrong task, and every later operation of the client then fails or hangs (a 500,
    a replica that stays unready after the database came back).

    A retry of this replica may release the claim first (``Outcomes.free_ended_attempts``): the
    tries stop then.
    """
    claim = pending.claim
    backoff = Backoff(first=0.2, cap=0.5)
    give_up_at = time.monotonic() + DEFAULT_LEASE.total_seconds()
    while not pending.landed:
        try:
            with pymongo.timeout(_RELEASE_TRY_SECONDS):
                if await claim.store.release(claim.environment, claim.key, claim.holder):
                    pending.landed = True
                    return
        except PyMongoError:
            if time.monotonic() + backoff.cap >= give_up_at:
                raise
        if time.monotonic() + backoff.cap >= give_up_at:
            return
        await asyncio.sleep(backoff.next())

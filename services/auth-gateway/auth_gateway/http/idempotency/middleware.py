"""The middleware: claim the key, run the view (or replay), keep the answer or give the key back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from keyway_shared.backoff import Backoff
from keyway_shared.deadline import remaining
from keyway_shared.store import ClaimResult, KeyClaim

from ..errors import ApiError, Handler, error_response
from ..requests import read_body
from .claims import CURRENT_CLAIM, ActiveClaim, Outcomes
from .header import IDEMPOTENCY_KEY, IdempotentRouteLine, fingerprint, idempotent_routes, parse_idempotency_key
from .replay import refusal_or_replay, storable

__all__ = ["KeyOwner", "idempotency_middleware"]

# The environment whose keys the request's key is one of, or None: the view then answers the 401 as
# it always does. Not the view's own authentication: that one counts against the rate limit.
KeyOwner = Callable[[web.Request], Awaitable[str | None]]

# How long a retry waits for an attempt that holds its key before answering 409: at most this, and
# at most half of what is left of its own deadline (the other half is for running the request).
# A claim outlives its attempt when the attempt ended while the database was away (its release
# lands only when the database is back): the retry a client sends after that 503 then waits a
# moment and runs, instead of being told "in flight" about an attempt that has already answered.
IN_FLIGHT_WAIT_SECONDS = 3.0


async def _claim_waiting_for_holder(
    claim_once: Callable[[], Awaitable[KeyClaim]], free_ended_attempts: Callable[[], Awaitable[bool]]
) -> KeyClaim:
    taken = await claim_once()
    budget = remaining(IN_FLIGHT_WAIT_SECONDS) / 2
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + budget
    backoff = Backoff(first=0.05, cap=0.25)
    while taken.result is ClaimResult.IN_FLIGHT:
        if await free_ended_attempts():  # the holder was this replica's, and has answered already
            taken = await claim_once()
            continue
        pause = backoff.next()
        if loop.time() + pause >= give_up_at:
            break
        await asyncio.sleep(pause)
        taken = await claim_once()
    return taken


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:  # the envelope the error middleware would send: kept like any answer
        return error_response(err)


def idempotency_middleware(routes: Iterable[IdempotentRouteLine], *, key_owner: KeyOwner) -> Middleware:
    accepting = idempotent_routes(routes)
    outcomes = Outcomes()

    async def run(request: web.Request, handler: Handler, claim: ActiveClaim) -> web.StreamResponse:
        token = CURRENT_CLAIM.set(claim)
        try:
            response = await _answer(request, handler)
        except asyncio.CancelledError:  # a deadline or a shutdown: the next attempt may run at once
            outcomes.release_soon(claim)
            raise
        except BaseException:  # the error middleware's 500: not an answer to keep
            await outcomes.release(claim)
            raise
        finally:
            CURRENT_CLAIM.reset(token)
        answer = await storable(response)
        if answer is None:
            await outcomes.release(claim)
        else:
            await outcomes.complete(claim, answer)
        return response

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall(IDEMPOTENCY_KEY, [])
        if not values:
            return await handler(request)
        resource = request.match_info.route.resource
        if resource is None or (request.method, resource.canonical) not in accepting:
            return await handler(request)
        environment = await key_owner(request)
        if environment is None:
            return await handler(request)
        key = parse_idempotency_key(values)
        # The body within the limits ``requests.json_object`` holds it to (the view reads the same bytes again).
        request_fingerprint = fingerprint(request, await read_body(request))
        store = outcomes.store(request.app)
        claim = ActiveClaim(
            store=store,
            environment=environment,
            key=key,
            holder=uuid.uuid4().hex,
            method=request.method,
            connection_id=request.match_info.get("connectionId"),
            removal=None,
        )
        try:
            taken = await _claim_waiting_for_holder(
                lambda: store.claim(environment, key, request_fingerprint, holder=claim.holder),
                lambda: outcomes.free_ended_attempts(environment, key),
            )
        except BaseException:
            # No answer to the claim (a deadline, a blackholed link): its insert may still land, even
            # after the link heals, and would hold the key "in flight" for a whole lease.
            outcomes.release_soon(claim)
            raise
        if (settled := refusal_or_replay(taken)) is not None:
            return settled
        claim.removal = taken.removal
        return await run(request, handler, claim)

    return middleware

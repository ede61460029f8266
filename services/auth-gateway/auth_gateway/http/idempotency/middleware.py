"""The middleware: claim the key, run the view (or replay), keep the answer or give the key back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import ApiError, Handler, error_response
from ..requests import read_body
from .claims import CURRENT_CLAIM, ActiveClaim, Outcomes
from .header import IDEMPOTENCY_KEY, IdempotentRouteLine, fingerprint, idempotent_routes, parse_idempotency_key
from .replay import refusal_or_replay, storable

__all__ = ["KeyOwner", "idempotency_middleware"]

# The environment whose keys the request's key is one of, or None: the view then answers the 401 as
# it always does. Not the view's own authentication: that one counts against the rate limit.
KeyOwner = Callable[[web.Request], Awaitable[str | None]]


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
            taken = await store.claim(environment, key, request_fingerprint, holder=claim.holder)
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

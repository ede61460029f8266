"""``Idempotency-Key`` on the backend API's writes: a retry learns what its first attempt answered.

The IETF draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header),
as Stripe runs it: a client that timed out sends the same request again with the same key and gets
the first answer (status, body, ``Content-Type``/``Location``) marked ``Idempotent-Replayed: true``.
The same key with another request (method, path and query, ``Provider-Config-Key``, body) is a 422;
a retry while the first attempt still runs is a 409 (the draft's answer: holding the retry until the
first ends would tie up a connection for as long as the first takes, past the client's own timeout).
Keys are the environment's: two apps never share one. Outcomes are kept 24 h (``request_outcomes``).

What is kept: every answer the view gave below 500, errors included (the draft replays "success or
an error"; Stripe too, once the endpoint ran), but 408 and 429, which only say "later". What is not:
a 5xx (unlike Stripe, which replays even its 500s: here a 5xx is the database or broker away, a 503
the retry must run again), nor what is answered before the view runs (401, 429, this key's own
400/409/422, a body too large): the key is then free for the same request.

Which routes: the secret-key POST, PATCH and DELETE routes (the backend's writes), not the proxy
(its calls are the upstream's; ``Nango-Proxy-Idempotency-Key`` reaches an upstream that has keys).
The browser's connect routes do not take it: Nango's frontend SDK never sends one, a connect call is
already keyed by its connection id (a second attempt rewrites the same connection with the same
credentials), and the browser's credential is public. Requests without the header pay nothing.

A ``DELETE /connection`` records its key in the deletion's transaction (``connection_removal``), so
an attempt that takes over a claim whose holder died after the delete answers success, not 404.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.payload import BytesPayload
from aiohttp.typedefs import Middleware
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from keyway_shared.backoff import Backoff
from keyway_shared.logging import get_logger
from keyway_shared.service import CIPHER, MONGO_DB
from keyway_shared.store import ClaimResult, Environment, KeyClaim, RequestOutcomeStore, StoredAnswer
from keyway_shared.store.request_outcomes import DEFAULT_LEASE

from .env_cache import ENV_CACHE
from .http.errors import ApiError, Handler, error_response
from .keys import UUID_V4
from .openapi_spec import Route
from .requests import MAX_BODY_BYTES
from .resources import SETTINGS

__all__ = [
    "IDEMPOTENCY_KEY",
    "MAX_KEY_LENGTH",
    "REPLAYED",
    "ActiveClaim",
    "idempotency_middleware",
    "idempotent_routes",
    "parse_idempotency_key",
    "removal_claim",
]

log = get_logger(__name__)

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # Stripe's name; the draft names none
MAX_KEY_LENGTH = 255  # Stripe's bound
_STORED_HEADERS = ("Content-Type", "Location", "Content-Location")
_TRANSIENT = frozenset({408, 429})  # "try again later": a retry must not be told it forever
_RELEASE_WAIT_SECONDS = 1.0  # a retry sent as soon as a 5xx arrives finds the key free (a healthy write: ms)
_BOOKKEEPING_SECONDS = 10.0  # a release or a late store gives up after this; the lease is the last resort


def idempotent_routes(routes: Iterable[Route]) -> frozenset[tuple[str, str]]:
    """(method, path as the router spells it) of the routes that take the header: the secret key's writes.

    ``Route.takes_idempotency_key`` says which, so the OpenAPI document names the same routes.
    """
    return frozenset((r.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path)) for r in routes if r.takes_idempotency_key)


def _invalid(message: str) -> ApiError:
    return ApiError("invalid_idempotency_key", message)


def parse_idempotency_key(values: list[str]) -> str:
    """The key the header carries: a structured-field string (``"…"``, as the draft writes it) or bare text.

    Both spellings of one key are the same key. Printable ASCII only, 1 to 255 characters.
    """
    if len(values) != 1:
        raise _invalid(f"Send one {IDEMPOTENCY_KEY} header.")
    value = values[0].strip(" \t")
    if value.startswith('"'):
        value = _sf_string(value)
    if not value:
        raise _invalid(f"The {IDEMPOTENCY_KEY} header is empty.")
    if len(value) > MAX_KEY_LENGTH:
        raise _invalid(f"The {IDEMPOTENCY_KEY} is longer than {MAX_KEY_LENGTH} characters.")
    if any(not " " <= ch <= "~" for ch in value):
        raise _invalid(f"The {IDEMPOTENCY_KEY} may hold printable ASCII characters only.")
    return value


def _sf_string(text: str) -> str:
    """RFC 8941 §4.2.5: ``"`` … ``"`` with ``\\"`` and ``\\\\`` the only escapes."""
    out: list[str] = []
    index = 1
    while index < len(text):
        ch = text[index]
        if ch == "\\":
            if index + 1 >= len(text) or text[index + 1] not in '"\\':
                raise _invalid(f"The {IDEMPOTENCY_KEY} string has a bad escape.")
            out.append(text[index + 1])
            index += 2
            continue
        if ch == '"':
            if index != len(text) - 1:
                raise _invalid(f"The {IDEMPOTENCY_KEY} has text after its closing quote.")
            return "".join(out)
        out.append(ch)
        index += 1
    raise _invalid(f"The {IDEMPOTENCY_KEY} string has no closing quote.")


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


_CURRENT: contextvars.ContextVar[ActiveClaim | None] = contextvars.ContextVar("idempotency_claim", default=None)


def removal_claim(environment: str, connection_id: str) -> ActiveClaim | None:
    """The claim of the ``DELETE`` of this connection being answered now, if it came with a key.

    Tasks a request starts inherit its context (a bulk revocation job): the method and the route's
    connection id keep their deletions out of it.
    """
    claim = _CURRENT.get()
    if claim is None or claim.method != "DELETE" or claim.environment != environment:
        return None
    return claim if claim.connection_id == connection_id else None


async def _environment(request: web.Request) -> Environment | None:
    """The secret key's environment, or None: the view then answers the 401 as it always does.

    Not ``environment_from_secret_key``: the view calls that one, and the call counts against the
    rate limit; a lookup here is the environment cache's, a dictionary read when the key is warm.
    """
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not UUID_V4.match(secret):
        return None
    return await request.app[ENV_CACHE].by_secret_key(secret)


async def _body(request: web.Request) -> bytes:
    """The body, within the limits ``requests.json_object`` holds it to (it reads the same bytes again)."""
    too_large = ApiError(
        "payload_too_big", f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.", status=413
    )
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    try:
        async with asyncio.timeout(request.app[SETTINGS].http_body_timeout_seconds):
            raw = await request.read()
    except TimeoutError:
        raise ApiError("request_timeout", "The request body did not arrive in time.", status=408) from None
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    return raw


def _fingerprint(request: web.Request, body: bytes) -> str:
    """What makes two requests the same request: method, path and query, the integration header, body."""
    parts = [
        request.method.encode(),
        request.raw_path.encode(),
        request.headers.get("Provider-Config-Key", "").encode(),
        hashlib.sha256(body).digest(),
    ]
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()


async def _storable(response: web.StreamResponse) -> StoredAnswer | None:
    """The answer to keep, or None: a 5xx, a "later", or a body streamed rather than held (none here)."""
    if not isinstance(response, web.Response) or response.prepared:
        return None
    if response.status >= 500 or response.status in _TRANSIENT:
        return None
    body = response.body
    if isinstance(body, BytesPayload):  # a text body (the error envelope) is held as a payload
        body = await body.as_bytes()
    if not isinstance(body, bytes):
        return None
    headers = {name: response.headers[name] for name in _STORED_HEADERS if name in response.headers}
    return StoredAnswer(status=response.status, headers=headers, body=body)


def _replay(answer: StoredAnswer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    response.headers[REPLAYED] = "true"
    return response


class _Outcomes:
    """The middleware's store (opened on the first keyed request), and its bookkeeping off the request.

    Releasing a claim, or storing an answer again after a failed try, runs in a task with a context of
    its own: the request's database deadline (PyMongo's, in context variables) may be spent by then,
    and a shutdown or a deadline may be cancelling the request itself.
    """

    def __init__(self) -> None:
        self._store: RequestOutcomeStore | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
                async with asyncio.timeout(seconds):
                    await work()
            except (PyMongoError, TimeoutError) as exc:  # the lease frees the key in the end
                log.warning(failure, environment=environment, error=type(exc).__name__)

        task = asyncio.create_task(run(), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def release(self, claim: ActiveClaim) -> None:
        """Free the key for the next attempt; the answer waits a moment for it, not for an outage."""
        await asyncio.wait({self.release_soon(claim)}, timeout=_RELEASE_WAIT_SECONDS)

    def release_soon(self, claim: ActiveClaim) -> asyncio.Task[None]:
        return self._detached(
            lambda: _release_until_lease_ends(claim),
            "could not release an idempotency claim",
            claim.environment,
            seconds=DEFAULT_LEASE.total_seconds(),
        )

    async def complete(self, claim: ActiveClaim, answer: StoredAnswer) -> None:
        try:
            await claim.store.complete(claim.environment, claim.key, claim.holder, answer)
        except PyMongoError:  # e.g. the request's deadline spent: once more, on a deadline of its own
            self._detached(
                lambda: claim.store.complete(claim.environment, claim.key, claim.holder, answer),
                "could not store an idempotent answer",
                claim.environment,
            )


async def _release_until_lease_ends(claim: ActiveClaim) -> None:
    """Release the claim, trying again until it is released or its lease would free the key anyway.

    A claim sent while the database link was blackholed may land only once the link heals, after a
    first release failed or found nothing to release: without more tries, every retry of the
    request would be told 409 "in flight" for the rest of the lease. A claim that never lands costs
    a few no-op updates.
    """
    backoff = Backoff(first=0.2, cap=2.0)
    give_up_at = time.monotonic() + DEFAULT_LEASE.total_seconds()
    while True:
        try:
            async with asyncio.timeout(_BOOKKEEPING_SECONDS):
                if await claim.store.release(claim.environment, claim.key, claim.holder):
                    return
        except (PyMongoError, TimeoutError):
            if time.monotonic() + backoff.cap >= give_up_at:
                raise
        if time.monotonic() + backoff.cap >= give_up_at:
            return
        await asyncio.sleep(backoff.next())


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:  # the envelope the error middleware would send: kept like any answer
        return error_response(err)


def _refusal_or_replay(taken: KeyClaim) -> web.Response | None:
    """None when the key is ours to run; else the 422 or the 409 (raised), or the first answer."""
    if taken.result is ClaimResult.MISMATCH:
        raise ApiError(
            "idempotency_key_mismatch",
            f"This {IDEMPOTENCY_KEY} was used with another request (method, path, query or body); "
            "use a new key for a new request.",
        )
    if taken.result is ClaimResult.IN_FLIGHT:
        raise ApiError(
            "idempotency_key_in_use",
            f"A request with this {IDEMPOTENCY_KEY} is still being answered; retry shortly.",
            headers={"Retry-After": "1"},
        )
    if taken.result is ClaimResult.DONE:
        assert taken.answer is not None
        return _replay(taken.answer)
    return None


def idempotency_middleware(routes: Iterable[Route]) -> Middleware:
    accepting = idempotent_routes(routes)
    outcomes = _Outcomes()

    async def run(request: web.Request, handler: Handler, claim: ActiveClaim) -> web.StreamResponse:
        token = _CURRENT.set(claim)
        try:
            response = await _answer(request, handler)
        except asyncio.CancelledError:  # a deadline or a shutdown: the next attempt may run at once
            outcomes.release_soon(claim)
            raise
        except BaseException:  # the error middleware's 500: not an answer to keep
            await outcomes.release(claim)
            raise
        finally:
            _CURRENT.reset(token)
        answer = await _storable(response)
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
        environment = await _environment(request)
        if environment is None:
            return await handler(request)
        key = parse_idempotency_key(values)
        fingerprint = _fingerprint(request, await _body(request))
        store = outcomes.store(request.app)
        claim = ActiveClaim(
            store=store,
            environment=environment.name,
            key=key,
            holder=uuid.uuid4().hex,
            method=request.method,
            connection_id=request.match_info.get("connectionId"),
            removal=None,
        )
        try:
            taken = await store.claim(environment.name, key, fingerprint, holder=claim.holder)
        except BaseException:
            # No answer to the claim (a deadline, a blackholed link): its insert may still land, even
            # after the link heals, and would hold the key "in flight" for a whole lease.
            outcomes.release_soon(claim)
            raise
        if (settled := _refusal_or_replay(taken)) is not None:
            return settled
        claim.removal = taken.removal
        return await run(request, handler, claim)

    return middleware

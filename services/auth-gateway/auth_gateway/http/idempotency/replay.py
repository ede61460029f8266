"""Which answers a key keeps, and answering a retry with the kept one (or with why it cannot run)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.payload import BytesPayload

from keyway_shared.store import ClaimResult, KeyClaim, StoredAnswer

from ..errors import ApiError
from .header import IDEMPOTENCY_KEY

__all__ = ["REPLAYED", "refusal_or_replay", "storable"]

REPLAYED = "Idempotent-Replayed"  # Stripe's name; the draft names none
_STORED_HEADERS = ("Content-Type", "Location", "Content-Location")
_TRANSIENT = frozenset({408, 429})  # "try again later": a retry must not be told it forever


async def storable(response: web.StreamResponse) -> StoredAnswer | None:
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


def refusal_or_replay(taken: KeyClaim) -> web.Response | None:
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

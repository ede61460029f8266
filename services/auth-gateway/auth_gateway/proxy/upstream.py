"""One proxy call to the upstream: attempts, waits between them, and how a failure is reported.

The whole call, waits included, is bounded by a deadline until the upstream's response headers;
after that the body streams under the session's read timeout. Errors carry the upstream's host at
most, never its URL (a query string may hold an API key) nor anything the exception said.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from keyway_shared.egress import EgressRefusedError
from keyway_shared.providers.template import ProxyRetry

from .retry import RetryPolicy
from .signing import RequestSigner, signed_headers
from .target import Target

__all__ = ["Body", "UpstreamError", "UpstreamResponse", "call_upstream"]

Body = bytes | AsyncIterator[bytes] | None


class UpstreamError(Exception):
    """The upstream gave no answer to pass back: refused by the egress guard, unreachable, or too slow."""

    def __init__(self, code: str, message: str, *, status: int, attempts: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class UpstreamResponse:
    response: aiohttp.ClientResponse
    attempts: int


def _egress_refusal(exc: BaseException) -> EgressRefusedError | None:
    seen: BaseException | None = exc
    for _ in range(5):  # the refusal may come wrapped by the connector
        if seen is None:
            return None
        if isinstance(seen, EgressRefusedError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@asynccontextmanager
async def call_upstream(
    session: aiohttp.ClientSession,
    *,
    method: str,
    target: Target,
    body: Body,
    policy: RetryPolicy,
    hint: ProxyRetry | None,
    deadline_seconds: float,
    on_retry: Callable[[str], None] = lambda _reason: None,
    signer: RequestSigner | None = None,
) -> AsyncIterator[UpstreamResponse]:
    """The first answer worth passing back, open for streaming; raises ``UpstreamError`` if none came.

    ``signer`` signs each attempt anew (OAUTH1, TBA: a nonce is good for one request only; AWS_SIGV4:
    a signature is good for a few minutes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_seconds
    attempt = 0
    while True:
        failure: str
        headers = signed_headers(signer, method, target, body)
        try:
            async with asyncio.timeout_at(deadline):
                response = await session.request(
                    method,
                    target.url,
                    headers=headers,
                    data=body,
                    allow_redirects=False,  # a redirect goes back to the caller, credentials stay here
                    auto_decompress=target.decompress,
                )
        except Exception as exc:
            refusal = _egress_refusal(exc)
            if refusal is not None:
                raise UpstreamError(
                    "egress_refused",
                    f"Keyway does not call {target.host}: {refusal}. "
                    "An operator can allow a private network with KEYWAY_EGRESS_ALLOWLIST.",
                    status=403,
                    attempts=attempt + 1,
                ) from None
            if isinstance(exc, TimeoutError):
                failure = "timeout"
            elif isinstance(exc, aiohttp.ClientError | OSError):
                failure = "connection"
            else:
                raise
        else:
            if attempt < policy.retries and policy.retryable_status(response.status, response.headers):
                delay = policy.delay_after_response(attempt, response.headers, hint)
                if delay is not None and loop.time() + delay < deadline:
                    response.release()
                    on_retry("status")
                    await asyncio.sleep(delay)
                    attempt += 1
                    continue
            try:
                yield UpstreamResponse(response, attempt + 1)
            finally:
                response.release()
            return
        if attempt < policy.retries:
            delay = policy.backoff(attempt)
            if loop.time() + delay < deadline:
                on_retry(failure)
                await asyncio.sleep(delay)
                attempt += 1
                continue
        attempts = attempt + 1
        plural = "s" if attempts > 1 else ""
        if failure == "timeout":
            raise UpstreamError(
                "upstream_timeout",
                f"The upstream at {target.host} did not answer in time ({attempts} attempt{plural}).",
                status=504,
                attempts=attempts,
            ) from None
        raise UpstreamError(
            "upstream_unreachable",
            f"The upstream at {target.host} could not be reached ({attempts} attempt{plural}).",
            status=502,
            attempts=attempts,
        ) from None

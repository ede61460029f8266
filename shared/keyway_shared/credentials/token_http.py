"""One call to a provider endpoint that hands out a token, with failures sorted the way
``request_token`` sorts them (spec §5.4): transient (network, timeout, 5xx, 429) or permanent.

``request_token`` speaks OAuth 2's form-and-client-auth dialect; this is for everything else that
mints a token: OAuth 1 request and access tokens, GitHub installation tokens, App Store tokens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from .bounded_body import MAX_TOKEN_RESPONSE_BYTES, ResponseTooLargeError, read_bounded
from .errors import PermanentTokenError, TransientTokenError
from .oauth2_client import too_large, unreachable
from .tokens import parse_token_body

__all__ = ["TokenAnswer", "call_token_endpoint", "send_token_request"]


def _describe(parsed: dict[str, Any], status: int) -> tuple[str, str]:
    """(code, description) from the error shapes seen in the wild: OAuth, GitHub, App Store, OAuth 1,
    Meta's Graph API (``{"error": {"message", "type", "code"}}``)."""
    error = parsed.get("error")
    errors = parsed.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    graph = error if isinstance(error, dict) else {}
    code = (
        str(error)
        if isinstance(error, str) and error
        else str(first.get("code") or graph.get("type") or f"http_{status}")
    )
    description = (
        parsed.get("error_description")
        or parsed.get("message")
        or first.get("detail")
        or first.get("title")
        or graph.get("message")
        or parsed.get("oauth_problem")
        or f"The token endpoint answered {status}."
    )
    return code, str(description)


@dataclass(frozen=True)
class TokenAnswer:
    """A token endpoint's answer that was neither a failure to reach it nor a transient refusal."""

    status: int
    body: bytes
    headers: CIMultiDictProxy[str]


async def send_token_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    data: str | bytes | None = None,
    timeout_seconds: float = 15.0,
) -> TokenAnswer:
    """Send the request (no redirects, the answer bounded); TransientTokenError when the endpoint
    could not be reached, timed out, or answered 5xx or 429 (with its ``Retry-After`` in seconds)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with session.request(method, url, data=data, headers=headers, allow_redirects=False) as response:
                body = await read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
                status, answer_headers = response.status, response.headers
    except ResponseTooLargeError:
        raise too_large(url) from None
    except TimeoutError:
        message = f"The token endpoint did not answer within {timeout_seconds:g}s."
        raise TransientTokenError("token_timeout", message) from None
    except aiohttp.ClientError as exc:
        raise unreachable(url, exc) from None
    if status >= 500 or status == 429:
        retry_after = answer_headers.get("Retry-After")
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise TransientTokenError(
            "token_provider_unavailable", f"The token endpoint answered {status}.", status=status, retry_after=seconds
        )
    return TokenAnswer(status, body, answer_headers)


async def call_token_endpoint(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    data: str | bytes | None = None,
    timeout_seconds: float = 15.0,
) -> dict[str, Any]:
    """Send the request; the parsed body (JSON or form-encoded) on a 2xx answer, else an error."""
    answer = await send_token_request(session, method, url, headers=headers, data=data, timeout_seconds=timeout_seconds)
    status, body, content_type = answer.status, answer.body, answer.headers.get("Content-Type", "")
    try:
        parsed = parse_token_body(body, content_type)
    except PermanentTokenError:
        if status >= 400:
            raise PermanentTokenError(
                "token_request_failed", f"The token endpoint answered {status}.", status=status
            ) from None
        raise
    if status >= 400:
        code, description = _describe(parsed, status)
        raise PermanentTokenError(
            "token_request_failed", f"{code}: {description}"[:500], status=status, provider_error=code
        )
    return parsed

"""RFC 7009 token revocation at a provider, with the client authentication its token requests use.

Never raises for the provider's sake: the caller deletes locally whatever happens, so the outcome
is a value. Details name statuses and error codes only; a token or a provider's body never appears.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

from ..egress import failure_reason
from ..logging import get_logger
from ..providers import ProviderTemplate
from .bounded_body import ResponseTooLargeError, read_bounded
from .oauth2_client import client_request

__all__ = ["TokenRevocation", "revoke_token"]

TokenTypeHint = Literal["refresh_token", "access_token"]

log = get_logger(__name__)
_MAX_ERROR_BODY_BYTES = 64 * 1024  # only a short ``error`` code is kept from it


@dataclass(frozen=True, kw_only=True)
class TokenRevocation:
    token_type_hint: TokenTypeHint
    ok: bool
    detail: str


def _provider_error(body: bytes) -> str | None:
    """The RFC 6749 ``error`` code of a JSON error body, if short and plain (nothing else is kept)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    code = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(code, str) and len(code) <= 64 and code.replace("_", "").isalnum():
        return code
    return None


async def revoke_token(
    session: aiohttp.ClientSession,
    *,
    url: str,
    template: ProviderTemplate,
    token: str,
    token_type_hint: TokenTypeHint,
    client_id: str,
    client_secret: str,
    timeout_seconds: float,
) -> TokenRevocation:
    """POST ``token=…&token_type_hint=…`` to the revocation endpoint; 2xx is success (RFC 7009 §2.2)."""
    headers, data = client_request(
        url=url,
        template=template,
        params={"token": token, "token_type_hint": token_type_hint},
        client_id=client_id,
        client_secret=client_secret,
    )

    def outcome(ok: bool, detail: str) -> TokenRevocation:
        return TokenRevocation(token_type_hint=token_type_hint, ok=ok, detail=detail)

    try:
        async with asyncio.timeout(timeout_seconds):
            async with session.post(url, data=data, headers=headers, allow_redirects=False) as response:
                status = response.status
                body = await read_bounded(response, _MAX_ERROR_BODY_BYTES) if status >= 400 else b""
    except ResponseTooLargeError:
        body = b""  # the status says enough
    except TimeoutError:
        return outcome(False, f"The revocation endpoint did not answer within {timeout_seconds:g}s.")
    except aiohttp.ClientError as exc:
        # The same answer for a refused address, an unknown name or a silent host (see egress).
        log.warning("revocation endpoint unreachable", host=urlsplit(url).hostname, reason=failure_reason(exc))
        return outcome(False, "The revocation endpoint could not be reached.")
    if 200 <= status < 300:
        return outcome(True, f"The provider revoked the {token_type_hint}.")
    code = _provider_error(body)
    return outcome(False, f"The revocation endpoint answered {status}" + (f" ({code})." if code else "."))

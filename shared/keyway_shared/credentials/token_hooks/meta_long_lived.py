"""Instagram (API with Instagram Login) and Threads: Meta's long-lived user tokens.

The code exchange gives a short-lived token (Instagram: 1 hour, Threads: 1 hour), useless to keep:
it cannot be refreshed. It is traded at once for a long-lived one, valid 60 days
(``GET {host}/access_token?grant_type=ig_exchange_token&client_secret=…&access_token=…``), which
refreshes itself: ``GET {refresh_url}?grant_type=ig_refresh_token&access_token=…`` answers a new
60-day token once the current one is at least 24 hours old and still valid. No refresh token
exists; an expired long-lived token cannot be renewed, only reconnected. The exchange endpoint is
the ``access_token`` beside the template's ``refresh_url`` (one host per product).

A failed long-lived exchange fails the connection, rather than store a token that dies within the
hour with no way to renew it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from ..errors import PermanentTokenError
from ..shapes import OAuth2Credentials
from .base import CodeGrant, TokenCall, TokenHook

__all__ = ["INSTAGRAM", "THREADS", "MetaLongLived"]

# What describes the token itself; the rest of an answer (user_id, permissions) is kept across renewals.
_TOKEN_FIELDS = {"access_token", "token_type", "expires_in", "expires_at", "refresh_token"}


def _first_grant(answer: dict[str, Any]) -> dict[str, Any]:
    """Instagram documents its answer as ``{"data": [{access_token, user_id, permissions}]}`` and
    has answered the flat object too: either is read."""
    data = answer.get("data")
    if "access_token" not in answer and isinstance(data, list) and data and isinstance(data[0], dict):
        return dict(data[0])
    return answer


def _details(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in _TOKEN_FIELDS}


@dataclass(frozen=True)
class MetaLongLived(TokenHook):
    exchange_grant: str  # ig_exchange_token, th_exchange_token
    refresh_grant: str  # ig_refresh_token, th_refresh_token

    async def exchange(self, call: TokenCall, grant: CodeGrant) -> dict[str, Any]:
        short = _first_grant(await super().exchange(call, grant))
        token = short.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentTokenError("invalid_token_response", "The token response has no access_token.")
        refresh_url = call.template_url(call.template.refresh_url, "refresh URL")
        long_lived = await call.get_token(
            urljoin(refresh_url, "access_token"),
            {"grant_type": self.exchange_grant, "client_secret": call.client_secret, "access_token": token},
        )
        if not long_lived.get("access_token"):
            raise PermanentTokenError("invalid_token_response", "The long-lived token exchange gave no access_token.")
        return {**_details(short), **long_lived}

    async def refresh(self, call: TokenCall, credentials: OAuth2Credentials) -> dict[str, Any]:
        # The long-lived token renews itself; ``call.url`` is the template's refresh_url.
        answer = await call.get_token(
            call.url, {"grant_type": self.refresh_grant, "access_token": credentials.access_token}
        )
        return {**_details(credentials.raw), **answer}


INSTAGRAM = MetaLongLived(exchange_grant="ig_exchange_token", refresh_grant="ig_refresh_token")
THREADS = MetaLongLived(exchange_grant="th_exchange_token", refresh_grant="th_refresh_token")

"""TikTok Ads (Marketing API): its own code exchange, and a token that does not expire.

``POST {token_url}`` with the JSON ``{app_id, secret, auth_code}`` answers HTTP 200 whatever
happened, in TikTok's envelope ``{code, message, request_id, data}``: ``code`` 0 is success, with
``data: {access_token, advertiser_ids, scope}``; any other ``code`` is an error (40100 is rate
limiting, 5xxxx TikTok's own failures: both worth retrying). The long-lived token has no refresh
token and no expiry; the advertiser revokes it, or the app reconnects.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import PermanentTokenError, TransientTokenError
from ..oauth2_client import token_headers
from ..shapes import OAuth2Credentials
from ..token_http import call_token_endpoint
from .base import CodeGrant, TokenCall, TokenHook

__all__ = ["TikTokAds", "unwrap"]

_RATE_LIMITED = 40100


def unwrap(answer: dict[str, Any]) -> dict[str, Any]:
    """The token out of TikTok's envelope, or the error it reports."""
    code = answer.get("code")
    message = str(answer.get("message") or "no message")[:300]
    try:
        number = int(code)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PermanentTokenError("invalid_token_response", "The token endpoint's answer has no result code.") from None
    if number != 0:
        description = f"{number}: {message}"
        if number == _RATE_LIMITED or number >= 50000:
            raise TransientTokenError("token_provider_unavailable", description)
        raise PermanentTokenError("token_request_failed", description, provider_error=str(number))
    data = answer.get("data")
    if not isinstance(data, dict) or not data.get("access_token"):
        raise PermanentTokenError("invalid_token_response", "The token response has no access_token.")
    request_id = answer.get("request_id")
    return {**data, **({"request_id": request_id} if request_id else {})}


class TikTokAds(TokenHook):
    async def exchange(self, call: TokenCall, grant: CodeGrant) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "Keyway"}
        headers |= token_headers(call.template, call.connection_config)
        body = json.dumps({"app_id": call.client_id, "secret": call.client_secret, "auth_code": grant.code})
        answer = await call_token_endpoint(
            call.http, "POST", call.url, headers=headers, data=body, timeout_seconds=call.timeout_seconds
        )
        return unwrap(answer)

    async def refresh(self, call: TokenCall, credentials: OAuth2Credentials) -> dict[str, Any]:
        raise PermanentTokenError(
            "not_refreshable", "TikTok Ads tokens do not expire and cannot be refreshed; reconnect to replace one."
        )

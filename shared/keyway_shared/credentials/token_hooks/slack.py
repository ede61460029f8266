"""Slack with token rotation: the bot token and the user token (under ``authed_user``, the
template's ``alternate_access_token_response_path``) each come with their own refresh token and
12-hour ``expires_in``, and each is refreshed with its own refresh token.

The code exchange needs nothing of its own (the template's fields say where the user token is, and
the connection expires with the first of the two). A refresh renews the top-level token as any
provider's, then the user token when the connection has a distinct one: that second refresh is not
fatal (the bot token is already rotated and must be stored); the old user token is kept, with the
connection's last expiry, so the next refresh comes soon and tries it again. Without rotation
Slack issues neither refresh token nor expiry, and nothing here runs.
"""

from __future__ import annotations

from typing import Any

from ...logging import get_logger
from ..errors import TokenRequestError
from ..shapes import OAuth2Credentials
from ..tokens import value_at_path
from .base import TokenCall, TokenHook

__all__ = ["Slack"]

log = get_logger(__name__)


class Slack(TokenHook):
    async def refresh(self, call: TokenCall, credentials: OAuth2Credentials) -> dict[str, Any]:
        answer = await super().refresh(call, credentials)
        path = call.template.alternate_access_token_response_path
        previous = value_at_path(credentials.raw, path) if path else None
        if not path or "." in path or not isinstance(previous, dict):
            return answer
        user_refresh = previous.get("refresh_token")
        if not isinstance(user_refresh, str) or not user_refresh or user_refresh == credentials.refresh_token:
            # No rotating user token, or it is the one just refreshed (a user-token-only install):
            # spending it twice would revoke it.
            return answer
        try:
            renewed = await call.post_token({"grant_type": "refresh_token", "refresh_token": user_refresh})
        except TokenRequestError as exc:
            log.warning("slack user token not refreshed; the bot token was", error=exc.type)
            kept = {key: value for key, value in previous.items() if key != "expires_in"}
            if credentials.expires_at:
                kept["expires_at"] = credentials.expires_at
            return {**answer, path: kept}
        user = renewed.get(path) if isinstance(renewed.get(path), dict) else renewed
        return {**answer, path: user}

"""GitHub App installation tokens (spec §5.9 APP and CUSTOM): the app proves itself with an RS256 JWT
signed by its private key, and GitHub answers with a token for one installation, valid an hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiohttp

from .errors import PermanentTokenError
from .jwt_signing import sign_jwt
from .token_http import call_token_endpoint
from .tokens import js_iso, parse_expires_at

__all__ = ["app_jwt", "installation_token"]

# GitHub refuses a JWT living over 10 minutes and one issued "in the future": backdate a minute for
# clock drift and stay under the limit.
_BACKDATE = timedelta(seconds=60)
_LIFETIME = timedelta(minutes=9)


def app_jwt(*, app_id: str, private_key: str, now: datetime) -> str:
    claims = {
        "iat": int((now - _BACKDATE).timestamp()),
        "exp": int((now + _LIFETIME).timestamp()),
        "iss": app_id,
    }
    return sign_jwt(private_key=private_key, algorithm="RS256", claims=claims)


async def installation_token(
    session: aiohttp.ClientSession,
    *,
    token_url: str,
    app_id: str,
    private_key: str,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[dict[str, Any], datetime | None]:
    """``{type: "APP", access_token, expires_at, raw}`` for the installation ``token_url`` names."""
    headers = {
        "Authorization": f"Bearer {app_jwt(app_id=app_id, private_key=private_key, now=now)}",
        "Accept": "application/vnd.github.v3+json",
        "User-Agent": "Keyway",
    }
    raw = await call_token_endpoint(session, "POST", token_url, headers=headers, timeout_seconds=timeout_seconds)
    token = raw.get("token")
    if not isinstance(token, str) or not token:
        raise PermanentTokenError("invalid_token_response", "GitHub's answer has no installation token.")
    expires_at = parse_expires_at(raw, now)
    credentials: dict[str, Any] = {"type": "APP", "access_token": token}
    if expires_at is not None:
        credentials["expires_at"] = js_iso(expires_at)
    credentials["raw"] = raw
    return credentials, expires_at

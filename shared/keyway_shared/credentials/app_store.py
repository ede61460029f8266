"""App Store Connect (spec §5.9 APP_STORE): an ES256 JWT signed with the customer's private key.

As Nango does, the JWT is POSTed to the template's ``token_url`` and the answer's ``token`` and
``expires_at`` are stored; when the answer carries no expiry, the JWT's own ``exp`` is the bound.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from .errors import PermanentTokenError
from .jwt_signing import load_pem, sign_jwt
from .shapes import AppStoreCredentials
from .token_http import call_token_endpoint
from .tokens import js_iso, parse_expires_at

__all__ = ["app_store_jwt", "app_store_token"]

_LIFETIME = timedelta(minutes=15)  # Apple accepts up to 20


def app_store_jwt(
    *, private_key: str, private_key_id: str, issuer_id: str, audience: str | None, scope: str | None, now: datetime
) -> str:
    claims: dict[str, Any] = {
        "iat": int(now.timestamp()),
        "exp": int((now + _LIFETIME).timestamp()),
        "iss": issuer_id,
    }
    if audience:
        claims["aud"] = audience
    if scope:
        claims["scope"] = scope
    return sign_jwt(private_key=private_key, algorithm="ES256", claims=claims, kid=private_key_id)


async def app_store_token(
    session: aiohttp.ClientSession,
    *,
    token_url: str,
    private_key: str,
    private_key_id: str,
    issuer_id: str,
    audience: str | None,
    scope: str | None,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[AppStoreCredentials, datetime]:
    """``{type: "APP_STORE", access_token, private_key: base64(PEM), expires_at, raw}``."""
    jwt = app_store_jwt(
        private_key=private_key,
        private_key_id=private_key_id,
        issuer_id=issuer_id,
        audience=audience,
        scope=scope,
        now=now,
    )
    headers = {
        "Authorization": f"Bearer {jwt}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "Keyway",
    }
    raw = await call_token_endpoint(
        session, "POST", token_url, headers=headers, data=json.dumps({}), timeout_seconds=timeout_seconds
    )
    token = raw.get("token") or raw.get("access_token")
    if not isinstance(token, str) or not token:
        raise PermanentTokenError("invalid_token_response", "The token endpoint's answer has no token.")
    expires_at = parse_expires_at(raw, now) or now + _LIFETIME
    credentials = AppStoreCredentials(
        access_token=token,
        private_key=base64.b64encode(load_pem(private_key).encode()).decode("ascii"),
        expires_at=js_iso(expires_at),
        raw=raw,
    )
    return credentials, expires_at

"""OAuth 2 client credentials (spec §5.8): a token for the client itself, minted at connect time and
minted again, the same way, whenever it runs out (the token-refresher calls this too).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from ..providers import ProviderTemplate
from .errors import PermanentTokenError
from .oauth2_client import request_token
from .shapes import ClientCredentials
from .tokens import js_iso, parse_expires_at

__all__ = ["client_credentials_token"]


def _token_and_expiry(raw: dict[str, Any], now: datetime) -> tuple[str, datetime | None]:
    """``access_token`` as OAuth 2 says, or ``data.token`` as Personio says."""
    token = raw.get("access_token")
    expires_at = parse_expires_at(raw, now)
    data = raw.get("data")
    if not token and isinstance(data, dict):
        token = data.get("token") or data.get("access_token")
        expires_at = expires_at or parse_expires_at(data, now)
    if not isinstance(token, str) or not token:
        raise PermanentTokenError("invalid_token_response", "The token response has no access_token.")
    return token, expires_at


async def client_credentials_token(
    session: aiohttp.ClientSession,
    *,
    template: ProviderTemplate,
    token_url: str,
    client_id: str,
    client_secret: str,
    scopes: list[str],
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[ClientCredentials, datetime | None]:
    """Nango's OAUTH2_CC credentials ``{type, token, client_id, client_secret, expires_at?, raw}``.

    ``token_url`` is already interpolated. The client authenticates in the body (form or JSON, as
    the template's ``body_format`` says) or, for ``authorization_method: header`` or
    ``token_request_auth_method: basic``, with a Basic header only.
    """
    params: dict[str, str] = {"grant_type": "client_credentials"}
    params.update(template.token_params)
    if scopes:
        params["scope"] = template.scope_separator.join(scopes)
    if template.token_request_auth_method == "basic":  # noqa: S105 - a method name
        # Here Basic replaces the body credentials (Spotify); in the code exchange it is added to them.
        template = template.model_copy(update={"authorization_method": "header"})
    raw = await request_token(
        session,
        token_url=token_url,
        template=template,
        params=params,
        client_id=client_id,
        client_secret=client_secret,
        timeout_seconds=timeout_seconds,
    )
    token, expires_at = _token_and_expiry(raw, now)
    credentials = ClientCredentials(
        token=token,
        client_id=client_id,
        client_secret=client_secret,
        expires_at=js_iso(expires_at) if expires_at is not None else None,
        raw=raw,
    )
    return credentials, expires_at

"""OAuth 2 client credentials (spec §5.8): a token for the client itself, minted at connect time and
minted again, the same way, whenever it runs out (the token-refresher calls this too).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ..providers import ProviderTemplate
from .errors import PermanentTokenError
from .oauth2_client import request_token
from .shapes import ClientCredentials
from .tokens import js_iso, parse_expires_at

__all__ = ["client_credentials_token"]


def _token_and_expiry(raw: dict[str, Any], now: datetime, template: ProviderTemplate) -> tuple[str, datetime | None]:
    """``access_token`` as OAuth 2 says, or ``data.token`` as Personio says; the expiry in the unit
    the template names, else its fixed lifetime (``token_expires_in_ms``, 0 for none)."""
    in_ms = template.expires_in_unit == "milliseconds"
    token = raw.get("access_token")
    expires_at = parse_expires_at(raw, now, expires_in_ms=in_ms)
    data = raw.get("data")
    if not token and isinstance(data, dict):
        token = data.get("token") or data.get("access_token")
        expires_at = expires_at or parse_expires_at(data, now, expires_in_ms=in_ms)
    if expires_at is None and template.token_expires_in_ms:
        expires_at = now + timedelta(milliseconds=template.token_expires_in_ms)
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
    connection_config: Mapping[str, Any] | None = None,
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
        connection_config=connection_config,
    )
    token, expires_at = _token_and_expiry(raw, now, template)
    credentials = ClientCredentials(
        token=token,
        client_id=client_id,
        client_secret=client_secret,
        expires_at=js_iso(expires_at) if expires_at is not None else None,
        raw=raw,
    )
    return credentials, expires_at

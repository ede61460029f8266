"""OAuth 2 authorization-code credentials, obtained and renewed: the one path the gateway's code
exchange and the shared refresh both take, so a provider's quirks are handled once.

Each grant runs the template's hook (:mod:`.token_hooks`; the standard grants unless it names
one), then reads the answer as the template's fields say, then settles the expiry: the answer's
own, else the hook's (Salesforce introspects), else the template's fixed ``token_expires_in_ms``
(0: none), else none.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ..providers import ProviderTemplate
from .shapes import OAuth2Credentials
from .token_hooks import CodeGrant, TokenCall, TokenHook, hook_for
from .tokens import value_at_path

__all__ = ["exchange_authorization_code", "refresh_oauth2", "stored_config"]


def stored_config(
    template: ProviderTemplate, connection_config: Mapping[str, Any], token_response: Mapping[str, Any]
) -> dict[str, Any]:
    """The configuration as a connection made from ``token_response`` stores it, as far as URLs go:
    the fields the token response fills come from it, never from what the browser gave."""
    filled = set(template.token_response_metadata)
    config = {name: value for name, value in connection_config.items() if name not in filled}
    for path in template.token_response_metadata:
        value = value_at_path(token_response, path)
        if value is not None:
            config[path] = value
    return config


async def _settle(
    hook: TokenHook,
    call: TokenCall,
    raw: dict[str, Any],
    *,
    previous_refresh_token: str | None = None,
) -> tuple[OAuth2Credentials, datetime | None]:
    template = call.template
    credentials, expires_at = OAuth2Credentials.from_token_response(
        raw,
        now=call.now,
        previous_refresh_token=previous_refresh_token,
        alternate_path=template.alternate_access_token_response_path,
        expires_in_ms=template.expires_in_unit == "milliseconds",
    )
    if expires_at is not None:
        return credentials, expires_at
    expires_at = await hook.expiry(call, credentials)
    if expires_at is None and template.token_expires_in_ms:
        expires_at = call.now + timedelta(milliseconds=template.token_expires_in_ms)
    if expires_at is not None:
        credentials = credentials.expiring_at(expires_at)
    return credentials, expires_at


async def exchange_authorization_code(
    http: aiohttp.ClientSession,
    *,
    template: ProviderTemplate,
    token_url: str,
    grant: CodeGrant,
    client_id: str,
    client_secret: str,
    connection_config: Mapping[str, Any],
    now: datetime,
    timeout_seconds: float,
) -> tuple[OAuth2Credentials, datetime | None, dict[str, Any]]:
    """(credentials, expires_at, the token response) for an authorization code; ``token_url`` is
    rendered, ``connection_config`` is what the browser gave at connect time."""
    hook = hook_for(template)
    call = TokenCall(
        http=http,
        template=template,
        url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        connection_config=connection_config,
        now=now,
        timeout_seconds=timeout_seconds,
    )
    raw = await hook.exchange(call, grant)
    stored = call.with_config(stored_config(template, connection_config, raw))
    credentials, expires_at = await _settle(hook, stored, raw)
    return credentials, expires_at, raw


async def refresh_oauth2(
    http: aiohttp.ClientSession,
    *,
    template: ProviderTemplate,
    refresh_url: str,
    credentials: OAuth2Credentials,
    client_id: str,
    client_secret: str,
    connection_config: Mapping[str, Any],
    now: datetime,
    timeout_seconds: float,
) -> tuple[OAuth2Credentials, datetime | None]:
    """New credentials for a stored connection's; the old refresh token is kept when the provider
    sends none (most do not rotate it)."""
    hook = hook_for(template)
    call = TokenCall(
        http=http,
        template=template,
        url=refresh_url,
        client_id=client_id,
        client_secret=client_secret,
        connection_config=connection_config,
        now=now,
        timeout_seconds=timeout_seconds,
    )
    raw = await hook.refresh(call, credentials)
    return await _settle(hook, call, raw, previous_refresh_token=credentials.refresh_token)

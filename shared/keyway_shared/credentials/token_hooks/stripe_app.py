"""Stripe Apps (marketplace OAuth): the platform's secret key authenticates the token requests.

Stripe documents ``curl https://api.stripe.com/v1/oauth/token -u sk_live_…:`` with ``code`` and
``grant_type`` in the body (``redirect_uri`` too, as Nango sends it), and the same for
``grant_type=refresh_token``: HTTP Basic with the app's secret key as the user name and an empty
password, and no client id or secret in the body (Stripe's API refuses parameters it does not
know). The answer gives no ``expires_in`` although an access token lives one hour; the template's
``token_expires_in_ms`` says so, as Nango fills 3600.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

from ..oauth2_client import token_headers
from ..shapes import OAuth2Credentials
from ..token_http import call_token_endpoint
from .base import CodeGrant, TokenCall, TokenHook

__all__ = ["StripeApp"]


class StripeApp(TokenHook):
    async def exchange(self, call: TokenCall, grant: CodeGrant) -> dict[str, Any]:
        # redirect_uri as Nango sends it (Stripe accepts it; OAuth 2 asks it back when it was given).
        params = {"grant_type": "authorization_code", "code": grant.code, "redirect_uri": grant.redirect_uri}
        return await _post(call, params)

    async def refresh(self, call: TokenCall, credentials: OAuth2Credentials) -> dict[str, Any]:
        if not credentials.refresh_token:
            return await super().refresh(call, credentials)  # refused there, with the usual error
        return await _post(call, {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token})


async def _post(call: TokenCall, params: dict[str, str]) -> dict[str, Any]:
    # The secret key is the client secret of the integration (Stripe Apps have no client secret of
    # their own); the client id is not sent.
    basic = base64.b64encode(f"{call.client_secret}:".encode()).decode()
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Keyway",
        "Authorization": f"Basic {basic}",
    }
    headers |= token_headers(call.template, call.connection_config)
    return await call_token_endpoint(
        call.http, "POST", call.url, headers=headers, data=urlencode(params), timeout_seconds=call.timeout_seconds
    )

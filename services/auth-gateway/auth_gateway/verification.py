"""The live check a template may declare for API-key and Basic credentials (``proxy.verification``):
one request to the provider with the new credentials before the connection is stored, so a mistyped
key fails in the user's face instead of in the app's first call."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import urlencode

import aiohttp

from keyway_shared.egress import EgressRefusedError
from keyway_shared.providers import ProviderTemplate
from keyway_shared.providers.interpolation import MissingParamError, interpolate

from .errors import ApiError

__all__ = ["verify_credentials"]


async def verify_credentials(
    http: aiohttp.ClientSession,
    template: ProviderTemplate,
    credentials: dict[str, Any],
    connection_config: dict[str, Any],
    *,
    timeout_seconds: float,
) -> None:
    proxy = template.proxy
    check = proxy.verification if proxy else None
    if proxy is None or check is None:
        return
    values = {**connection_config, "apiKey": credentials.get("apiKey", "")}
    try:
        base = interpolate(check.base_url_override or proxy.base_url or "", values)
        headers = {name: interpolate(value, values) for name, value in {**proxy.headers, **check.headers}.items()}
        query = {name: interpolate(value, values) for name, value in proxy.query.items()}
    except MissingParamError as exc:
        names = ", ".join(f"params[{n}]" for n in exc.names)
        raise ApiError("url_param_err", f"The provider's verification call needs {names}.") from None
    if not base:
        return
    if credentials.get("type") == "BASIC":
        pair = f"{credentials.get('username', '')}:{credentials.get('password', '')}".encode()
        headers.setdefault("Authorization", "Basic " + base64.b64encode(pair).decode())
    url = base.rstrip("/") + "/" + check.endpoint.lstrip("/")
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    try:
        async with asyncio.timeout(timeout_seconds):
            async with http.request(check.method.upper(), url, headers=headers, allow_redirects=False) as response:
                status = response.status
    except EgressRefusedError as exc:
        raise ApiError("connection_test_failed", f"The provider's verification URL is not reachable: {exc}") from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ApiError(
            "connection_test_failed",
            f"The provider could not be reached to verify the credentials ({exc.__class__.__name__}).",
        ) from None
    if not 200 <= status < 300:
        raise ApiError("connection_test_failed", f"The provider refused these credentials (HTTP {status}).")

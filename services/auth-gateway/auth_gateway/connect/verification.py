"""The live check a template may declare for API-key and Basic credentials (``proxy.verification``):
one request to the provider with the new credentials before the connection is stored, so a mistyped
key fails in the user's face instead of in the app's first call."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from keyway_shared.credentials import Credentials
from keyway_shared.egress import failure_reason
from keyway_shared.logging import get_logger
from keyway_shared.providers import ProviderTemplate
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError, interpolate

from ..http.errors import ApiError

__all__ = ["verify_credentials"]

log = get_logger(__name__)


async def verify_credentials(
    http: aiohttp.ClientSession,
    template: ProviderTemplate,
    credentials: Credentials,
    connection_config: dict[str, Any],
    *,
    timeout_seconds: float,
) -> None:
    proxy = template.proxy
    check = proxy.verification if proxy else None
    values = {**connection_config, "apiKey": credentials.template_variables().get("apiKey", "")}
    try:
        # Every URL and header the connection will use, not only this call's: refused now, not at the
        # first proxy call. The values are the browser's, so no whole origin may come from them.
        template.check_connection_config(values)
        if proxy is None or check is None:
            return
        base = template.render_url(check.base_url_override or proxy.base_url or "", values)
        all_headers = {**proxy.headers, **check.headers}
        headers = {name: template.render_header(value, values) for name, value in all_headers.items()}
        query = {name: interpolate(value, values) for name, value in proxy.query.items()}  # encoded below
    except MissingParamError as exc:
        names = ", ".join(f"params[{n}]" for n in exc.names)
        raise ApiError("url_param_err", f"The provider's verification call needs {names}.") from None
    except UnsafeParamError as exc:
        name = "the API key" if exc.name == "apiKey" else f"params[{exc.name}]"
        message = f"The provider's URLs and headers cannot use {name}: it {exc.reason}."
        raise ApiError("invalid_connection_config", message) from None
    if not base:
        return
    authorization = credentials.authorization()  # Basic; an API key goes where the template puts it
    if authorization is not None:
        headers.setdefault("Authorization", authorization)
    url = base.rstrip("/") + "/" + check.endpoint.lstrip("/")
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    try:
        async with asyncio.timeout(timeout_seconds):
            async with http.request(check.method.upper(), url, headers=headers, allow_redirects=False) as response:
                status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        # One answer whether the egress guard refused the address, the name did not resolve or the
        # host did not answer: telling them apart would let a browser map internal names (the guard's
        # refusal is an aiohttp.ClientError too). The reason is for the operator's log only.
        log.warning("verification call failed", host=urlsplit(url).hostname, reason=failure_reason(exc))
        raise ApiError(
            "connection_test_failed", "The provider could not be reached to verify the credentials."
        ) from None
    if not 200 <= status < 300:
        raise ApiError("connection_test_failed", f"The provider refused these credentials (HTTP {status}).")

"""The live check a template may declare for typed credentials (``proxy.verification``): API keys,
Basic, and the tokens Keyway makes of what a person typed (JWT, WSSE):
a request to the provider with the new credentials before the connection is stored, so a mistyped
key fails in the user's face instead of in the app's first call.

As Nango's ``credentialsTest``: the verification's ``endpoints`` are tried in order and the first
2xx answer passes; an endpoint that answers otherwise, or not at all, hands over to the next, and
the credentials are refused when none passes. An endpoint may name ``${connectionConfig.x}``,
``${credentials.apiKey}`` or ``${credentials.username}`` (Jazzhr's key in the query, Twilio's
account in the path); ``data`` is sent as the JSON body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from keyway_shared.credentials import Credentials
from keyway_shared.egress import failure_reason
from keyway_shared.logging import get_logger
from keyway_shared.providers import ProviderTemplate
from keyway_shared.providers.expressions import RequestFacts, Scope
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError, interpolate

from ..http.errors import ApiError

__all__ = ["verify_credentials"]

log = get_logger(__name__)

_CREDENTIAL_WORDS = {
    "apiKey": "the API key",
    "credentials.apiKey": "the API key",
    "credentials.username": "the user name",
    "credentials.password": "the password",
}


def _values(credentials: Credentials, connection_config: Mapping[str, Any]) -> dict[str, Any]:
    variables = credentials.template_variables()  # ${accessToken} of a token Keyway made (JWT, WSSE)
    api_key = variables.get("apiKey", "")
    values: dict[str, Any] = {**connection_config, **variables, "apiKey": api_key}
    if api_key:
        values["credentials.apiKey"] = api_key
    username = getattr(credentials, "username", None)
    if isinstance(username, str) and username:
        values["credentials.username"] = username
    values["credentials"] = credentials.dump()  # ${credentials.password} inside base64(...) and the like
    return values


def _urls(template: ProviderTemplate, base: str, endpoints: list[str], values: Mapping[str, Any]) -> list[str]:
    """Each endpoint under ``base``, its placeholders filled as a URL's are (checked where they go)."""
    return [template.render_url(base.rstrip("/") + "/" + endpoint.lstrip("/"), values) for endpoint in endpoints]


async def _answer(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], data: Any, timeout_seconds: float
) -> int | None:
    """The status of one verification call; None when it got no answer (the reason is logged only)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with http.request(method, url, headers=headers, json=data, allow_redirects=False) as response:
                return response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        # One answer whether the egress guard refused the address, the name did not resolve or the
        # host did not answer: telling them apart would let a browser map internal names (the guard's
        # refusal is an aiohttp.ClientError too). The reason is for the operator's log only.
        log.warning("verification call failed", host=urlsplit(url).hostname, reason=failure_reason(exc))
        return None


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
    values = _values(credentials, connection_config)
    try:
        # Every URL and header the connection will use, not only this call's: refused now, not at the
        # first proxy call. The values are the browser's, so no whole origin may come from them.
        template.check_connection_config(values)
        if proxy is None or check is None:
            return
        base = template.render_url(check.base_url_override or proxy.base_url or "", values)
        if not base:
            return
        query = {name: interpolate(value, values) for name, value in proxy.query.items()}  # encoded below
        urls = _urls(template, base, check.endpoints, values)
        if query:
            urls = [url + ("&" if "?" in url else "?") + urlencode(query) for url in urls]
        all_headers = {**proxy.headers, **check.headers}
        # Headers are computed per call, as the proxy computes them: a signed one covers its URL.
        body = json.dumps(check.data).encode() if check.data is not None else None
        calls = []
        for url in urls:
            kind = "application/json" if body is not None else ""
            facts = RequestFacts(
                method=check.method, url=url, endpoint=urlsplit(url).path, body=body, content_type=kind
            )
            scope = Scope(values=values, request=facts.variables())
            headers = {name: template.render_header(value, scope) for name, value in all_headers.items()}
            calls.append((url, headers))
    except MissingParamError as exc:
        names = ", ".join(_CREDENTIAL_WORDS.get(n, f"params[{n}]") for n in exc.names)
        raise ApiError("url_param_err", f"The provider's verification call needs {names}.") from None
    except UnsafeParamError as exc:
        name = _CREDENTIAL_WORDS.get(exc.name, f"params[{exc.name}]")
        message = f"The provider's URLs and headers cannot use {name}: it {exc.reason}."
        raise ApiError("invalid_connection_config", message) from None
    authorization = credentials.authorization()  # Basic; an API key goes where the template puts it
    refused: int | None = None
    for url, headers in calls:
        if authorization is not None and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = authorization
        status = await _answer(http, check.method.upper(), url, headers, check.data, timeout_seconds)
        if status is not None and 200 <= status < 300:
            return
        refused = status if status is not None else refused
    if refused is None:
        raise ApiError("connection_test_failed", "The provider could not be reached to verify the credentials.")
    raise ApiError("connection_test_failed", f"The provider refused these credentials (HTTP {refused}).")

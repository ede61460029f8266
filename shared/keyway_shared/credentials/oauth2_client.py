"""Calling an OAuth 2 token endpoint the way a provider template asks (spec §5.4, §5.6, §5.8).

Request building leans on authlib (token request encoding, client authentication methods); the
HTTP call goes through the caller's egress-guarded aiohttp session with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from authlib.oauth2.auth import ClientAuth

from ..egress import failure_reason
from ..logging import get_logger
from ..providers import ProviderTemplate
from ..providers.expressions import Scope, expand
from ..providers.interpolation import MissingParamError, UnsafeParamError
from .bounded_body import MAX_TOKEN_RESPONSE_BYTES, ResponseTooLargeError, read_bounded
from .errors import PermanentTokenError, TransientTokenError
from .tokens import parse_token_body

__all__ = [
    "client_request",
    "query_url",
    "request_token",
    "template_params",
    "token_headers",
    "too_large",
    "unreachable",
]

log = get_logger(__name__)

_PERMANENT_OAUTH_ERRORS = {
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _optional_fields(template: ProviderTemplate) -> set[str]:
    return {
        name
        for name, spec in template.connection_config.items()
        if isinstance(spec, dict) and spec.get("optional") is True
    }


def template_params(
    template: ProviderTemplate, params: Mapping[str, str], values: Mapping[str, Any], *, what: str = "token request"
) -> dict[str, str]:
    """The template's ``token_params``/``refresh_params`` with their expressions evaluated from the
    connection's configuration (``${connectionConfig.audience}``, ``${now:...}``, fallbacks), as
    Nango's ``interpolateObjectValues`` fills them. Only the template's own parameters are
    evaluated, never a code or a token the grant adds.

    A parameter whose value is missing is left out when every missing field is declared optional
    (auth0-cc's ``organization``); Nango then sends the placeholder text itself, which no provider
    reads as meant. A required one missing is an error naming the field, never a value."""
    scope = Scope(values=values, patterns=template.field_patterns())
    optional = _optional_fields(template)
    filled: dict[str, str] = {}
    for name, text in params.items():
        if "${" not in text:
            filled[name] = text
            continue
        try:
            filled[name] = expand(text, scope)
        except MissingParamError as exc:
            if set(exc.names) <= optional:
                continue
            needed = ", ".join(f"connectionConfig.{field}" for field in exc.names)
            raise PermanentTokenError(
                "missing_connection_config", f"The {what}'s {name} parameter needs {needed}."
            ) from None
        except UnsafeParamError as exc:
            message = f"The {what}'s {name} parameter cannot use connectionConfig.{exc.name}: it {exc.reason}."
            raise PermanentTokenError("invalid_connection_config", message) from None
    return filled


def query_url(url: str, encoded: str) -> str:
    """``url`` with the form-encoded ``encoded`` appended to its query (``body_format: query``:
    Kno Commerce, Transporeon)."""
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, encoded) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def client_request(
    *,
    url: str,
    template: ProviderTemplate,
    params: dict[str, str],
    client_id: str,
    client_secret: str,
    client_in_params: bool = False,
) -> tuple[dict[str, str], str]:
    """Headers and body for a POST to one of the provider's OAuth endpoints, client authentication
    included as the template asks (token requests and RFC 7009 revocation share it).
    ``client_in_params``: ``params`` already authenticate the client (``custom``, ``private_key_jwt``).
    With ``body_format: query`` the body is form-encoded here; :func:`request_token` sends the
    parameters in the URL's query instead."""
    headers = {"Accept": "application/json", "User-Agent": "Keyway"}
    # Where the client credentials go: the body by default (client_secret_post), a Basic header when
    # the template says so; token_request_auth_method=basic adds the header and keeps the body.
    method = "client_secret_basic" if template.authorization_method == "header" else "client_secret_post"
    body_params = dict(params)
    if client_in_params:
        method = "none"
    public = not client_secret and not client_in_params  # a public client (RFC 6749 §2.1): its id alone, in the body
    if method == "client_secret_post" or public:
        body_params.setdefault("client_id", client_id)
    if method == "client_secret_post" and not public:
        body_params.setdefault("client_secret", client_secret)
    basic = template.authorization_method == "header" or template.token_request_auth_method == "basic"  # noqa: S105
    if basic and not client_in_params and not public:
        _uri, headers, _body = ClientAuth(client_id, client_secret, "client_secret_basic").prepare(
            "POST", url, headers, ""
        )
    if template.body_format == "json":
        headers["Content-Type"] = "application/json"
        data: str = json.dumps(body_params)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = urlencode(body_params)
    return headers, data


def token_headers(template: ProviderTemplate, values: Mapping[str, Any]) -> dict[str, str]:
    """The template's ``token_headers``, filled from the connection's configuration. The body's
    encoding stays ``body_format``'s: a ``content-type`` there is left out rather than contradict it."""
    headers: dict[str, str] = {}
    for name, text in template.token_headers.items():
        if name.lower() == "content-type":
            continue
        try:
            headers[name] = template.render_header(text, values)
        except MissingParamError as exc:
            message = f"The token request's {name} header needs {', '.join(exc.names)}."
            raise PermanentTokenError("missing_connection_config", message) from None
        except UnsafeParamError as exc:
            message = f"The token request's {name} header cannot use connectionConfig.{exc.name}: it {exc.reason}."
            raise PermanentTokenError("invalid_connection_config", message) from None
    return headers


def unreachable(url: str, exc: BaseException) -> TransientTokenError:
    """One answer for a refused address (the egress guard), an unknown name or a silent host: which
    one it was is logged, never told, so a browser choosing the URL cannot map internal names."""
    log.warning("token endpoint unreachable", host=urlsplit(url).hostname, reason=failure_reason(exc))
    return TransientTokenError("token_network_error", "The token endpoint could not be reached.")


def too_large(url: str) -> PermanentTokenError:
    log.warning("token endpoint answer too large", host=urlsplit(url).hostname, limit=MAX_TOKEN_RESPONSE_BYTES)
    return PermanentTokenError(
        "token_response_too_large",
        f"The token endpoint's answer is larger than {MAX_TOKEN_RESPONSE_BYTES // 1024} KiB; it was not read.",
    )


async def request_token(
    session: aiohttp.ClientSession,
    *,
    token_url: str,
    template: ProviderTemplate,
    params: dict[str, str],
    client_id: str,
    client_secret: str,
    timeout_seconds: float = 15.0,
    connection_config: Mapping[str, Any] | None = None,
    client_in_params: bool = False,
) -> dict[str, Any]:
    """POST ``params`` (grant type included) to the token endpoint; the parsed response on success.
    ``connection_config`` fills the template's ``token_headers``. ``body_format: query`` sends the
    parameters in the token URL's query and no body, as Nango does."""
    headers, data = client_request(
        url=token_url,
        template=template,
        params=params,
        client_id=client_id,
        client_secret=client_secret,
        client_in_params=client_in_params,
    )
    headers |= token_headers(template, connection_config or {})
    target: str = token_url
    sent: str | None = data
    if template.body_format == "query":
        target, sent = query_url(token_url, data), None  # client_request form-encoded them
        headers.pop("Content-Type", None)
    try:
        async with asyncio.timeout(timeout_seconds):
            skip = ("Content-Type",) if sent is None else ()  # aiohttp would call an empty body octet-stream
            async with session.post(
                target, data=sent, headers=headers, allow_redirects=False, skip_auto_headers=skip
            ) as response:
                body = await read_bounded(response, MAX_TOKEN_RESPONSE_BYTES)
                status = response.status
                content_type = response.headers.get("Content-Type", "")
                retry_after = _retry_after(response.headers.get("Retry-After"))
    except ResponseTooLargeError:
        raise too_large(token_url) from None
    except TimeoutError:
        message = f"The token endpoint did not answer within {timeout_seconds:g}s."
        raise TransientTokenError("token_timeout", message) from None
    except aiohttp.ClientError as exc:
        raise unreachable(token_url, exc) from None
    if status >= 500 or status == 429:
        raise TransientTokenError(
            "token_provider_unavailable",
            f"The token endpoint answered {status}.",
            status=status,
            retry_after=retry_after,
        )
    try:
        parsed = parse_token_body(body, content_type)
    except PermanentTokenError as exc:
        if status >= 400:
            raise PermanentTokenError(
                "token_request_failed", f"The token endpoint answered {status}.", status=status
            ) from None
        raise exc
    error = parsed.get("error")
    if status >= 400 or error:
        code = str(error) if error else f"http_{status}"
        description = str(
            parsed.get("error_description") or parsed.get("message") or f"The token endpoint answered {status}."
        )
        raise PermanentTokenError(
            "token_request_failed" if code not in _PERMANENT_OAUTH_ERRORS else code,
            f"{code}: {description}"[:500],
            status=status,
            provider_error=code,
        )
    return parsed

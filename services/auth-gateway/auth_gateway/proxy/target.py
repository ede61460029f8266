"""The upstream request a proxy call becomes: its URL, and the headers carrying the credentials.

Precedence of headers, lowest first: the client's ``Content-Type``/``Accept``, the credentials by
type (Bearer, Basic), the template's ``proxy.headers``, and the caller's ``Nango-Proxy-<Name>``
headers (as Nango merges them). Nothing else the client sent goes upstream: not its Authorization
(the Keyway secret key), not its cookies, not hop-by-hop headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from keyway_shared.credentials.mcp_auth import proxy_base
from keyway_shared.credentials.shapes import (
    AwsSigV4Credentials,
    Credentials,
    SignedCredentials,
    UnusableCredentialsError,
)
from keyway_shared.providers.expressions import RequestFacts, Scope, expand, uses
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError
from keyway_shared.providers.rendering import render_header, render_url
from keyway_shared.providers.template import ProviderTemplate
from keyway_shared.store import Connection

from ..http.errors import ApiError

__all__ = ["HOP_BY_HOP", "Target", "build_target", "credential_variables", "headers_need_body", "headers_need_client"]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NEVER_SET = HOP_BY_HOP | {"host", "content-length"}  # framing is ours to decide
_CLIENT_HEADERS = ("Content-Type", "Accept")
_PREFIX = "nango-proxy-"
_CREDENTIAL_NAMES = frozenset({"accessToken", "apiKey"})  # the variables credential_variables gives
_CLIENT_NAMES = frozenset({"clientId", "clientSecret"})
# What a header computed from the request body names (Duo's canonical parameters, a body digest).
_BODY_NAMES = ("params", "bodyCanonicalParams", "awsSigV4")


@dataclass(frozen=True, kw_only=True)
class Target:
    url: URL
    headers: CIMultiDict[str]
    decompress: bool

    @property
    def host(self) -> str:
        return self.url.host or ""


def credential_variables(credentials: Credentials) -> dict[str, str]:
    """``${accessToken}`` and ``${apiKey}`` for template headers and query parameters."""
    return credentials.template_variables()


def _auth_header(credentials: Credentials, template_headers: Mapping[str, str]) -> str | None:
    """Bearer or Basic, as the credentials' type says (None: the template's headers or query carry them)."""
    if isinstance(credentials, SignedCredentials | AwsSigV4Credentials):
        return None  # OAUTH1, TBA, AWS_SIGV4: each attempt is signed anew (signing.py)
    try:
        return credentials.proxy_authorization(template_headers)
    except UnusableCredentialsError as exc:  # no token to send, or a type that signs each request
        raise ApiError(exc.code, exc.message) from None


def _variable_words(names: list[str]) -> str:
    """Names for people: a credential's or the integration's as such, a configuration key as
    ``connectionConfig.x``. Values are never quoted."""
    words = []
    for name in names:
        if name in _CREDENTIAL_NAMES or name.startswith("credentials."):
            words.append(f"the connection's credentials ({name.removeprefix('credentials.')})")
        elif name in _CLIENT_NAMES:
            words.append(f"the integration's OAuth client ({name})")
        else:
            words.append(f"connectionConfig.{name}")
    return ", ".join(dict.fromkeys(words))


def _interpolated(render: Callable[[str, Any], str], text: str, values: Any, what: str) -> str:
    """``render`` checks that no stored value moves the URL or splits a header: one stored before
    these checks, or from a callback, fails closed here with a 400 and nothing is sent."""
    try:
        return render(text, values)
    except MissingParamError as exc:
        raise _missing(exc, what) from None
    except UnsafeParamError as exc:
        raise _unsafe(exc, what) from None


def _missing(exc: MissingParamError, what: str) -> ApiError:
    return ApiError(
        "missing_connection_config",
        f"The {what} needs {_variable_words(exc.names)}, which this connection does not have.",
    )


def _unsafe(exc: UnsafeParamError, what: str) -> ApiError:
    return ApiError(
        "invalid_connection_config", f"The {what} cannot use {_variable_words([exc.name])}: it {exc.reason}."
    )


def _template_header(template: ProviderTemplate | None, name: str, value: str, scope: Scope) -> str | None:
    """One of the template's proxy headers, or None to leave it out: a header made only of optional
    fields the connection does not have (Google Ads' login-customer-id) is not sent, as Nango leaves
    it out; one that needs anything else is refused (400, nothing sent)."""
    what = f"proxy header '{name}'"
    try:
        return _header_renderer(template)(value, scope)
    except MissingParamError as exc:
        if template is not None and set(exc.names) <= _optional_fields(template):
            return None
        raise _missing(exc, what) from None
    except UnsafeParamError as exc:
        raise _unsafe(exc, what) from None


def _optional_fields(template: ProviderTemplate) -> set[str]:
    """The ``connection_config`` fields the template declares optional."""
    return {
        name
        for name, spec in template.connection_config.items()
        if isinstance(spec, dict) and spec.get("optional") is True
    }


def headers_need_body(template: ProviderTemplate | None) -> bool:
    """Whether a template header is computed from the request body (it must be read first)."""
    proxy = template.proxy if template is not None else None
    return proxy is not None and any(uses(value, *_BODY_NAMES) for value in proxy.headers.values())


def headers_need_client(template: ProviderTemplate | None) -> bool:
    """Whether a template header names the integration's OAuth client (Etsy's, MYOB's key header)."""
    proxy = template.proxy if template is not None else None
    return proxy is not None and any(uses(value, *_CLIENT_NAMES) for value in proxy.headers.values())


def _url_renderer(template: ProviderTemplate | None) -> Callable[[str, Mapping[str, Any]], str]:
    if template is None:
        return render_url
    return lambda text, values: template.render_url(text, values, stored=True)


def _header_renderer(template: ProviderTemplate | None) -> Callable[[str, Any], str]:
    return template.render_header if template is not None else render_header


def _query_renderer(text: str, scope: Scope) -> str:
    return expand(text, scope)  # percent-encoded when the URL is built: any text is safe there


def _upstream_url(base: str, raw_endpoint: str, raw_query: str, extra_query: dict[str, str]) -> URL:
    try:
        parsed = URL(base)
    except ValueError:
        parsed = URL()
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise ApiError("invalid_base_url", "The base URL must be an absolute http or https URL.")
    # The endpoint and query stay exactly as the client encoded them (``a%2Fb`` is not ``a/b``).
    text = str(parsed.with_query(None).with_fragment(None)).rstrip("/") + "/" + raw_endpoint.lstrip("/")
    query = "&".join(part for part in (raw_query, urlencode(extra_query) if extra_query else "") if part)
    return URL(text + ("?" + query if query else ""), encoded=True)


def build_target(
    *,
    connection: Connection,
    template: ProviderTemplate | None,
    client_headers: CIMultiDictProxy[str],
    raw_endpoint: str,
    raw_query: str,
    method: str = "GET",
    body: bytes | None = None,
    oauth_client: tuple[str | None, str | None] = (None, None),
) -> Target:
    """The upstream request. ``body`` is given when a template header is computed from it
    (:func:`headers_need_body`); ``oauth_client`` is the integration's client id and secret, for
    templates whose headers name them (:func:`headers_need_client`)."""
    proxy = template.proxy if template is not None else None
    config = connection.connection_config or {}
    variables = credential_variables(connection.credentials)
    # Credentials win over a same-named connection-configuration key (which an end user may set);
    # ``${connectionConfig.x}`` reads the configuration alone (Scope.config).
    values: dict[str, Any] = {**config, **variables, "credentials": connection.credentials.dump()}
    client_id, client_secret = oauth_client
    values |= {name: value for name, value in (("clientId", client_id), ("clientSecret", client_secret)) if value}

    base = client_headers.get("Base-Url-Override", "").strip() or (proxy.base_url if proxy else None)
    base = base or proxy_base(config)  # an MCP server the connection was authorized against
    if not base:
        raise ApiError(
            "missing_base_api_url",
            f"The provider '{connection.provider}' has no proxy base URL: send a Base-Url-Override header.",
        )
    base = _interpolated(_url_renderer(template), base, config, "base URL")
    template_query = proxy.query if proxy else {}
    # One clock reading and one random value for every template of this request, as Nango's stable
    # replacers: a Date header and the signature computed over it must agree.
    scope = Scope(values=values, config=config)
    query = {
        name: _interpolated(_query_renderer, value, scope, "proxy query") for name, value in template_query.items()
    }
    url = _upstream_url(base, raw_endpoint, raw_query, query)
    facts = RequestFacts(
        method=method,
        url=str(url),
        endpoint=raw_endpoint,
        body=body,
        content_type=client_headers.get("Content-Type", ""),
    )
    scope = Scope(values=values, config=config, request=facts.variables(), now=scope.now, random=scope.random)

    headers: CIMultiDict[str] = CIMultiDict()
    for name in _CLIENT_HEADERS:
        if name in client_headers:
            headers[name] = client_headers[name]
    authorization = _auth_header(connection.credentials, proxy.headers if proxy else {})
    if authorization:
        headers["Authorization"] = authorization
    headers.update(connection.credentials.proxy_headers())  # BILL's session and dev key
    sent_by_app = {name[len(_PREFIX) :].lower() for name in client_headers if name.lower().startswith(_PREFIX)}
    for name, value in (proxy.headers if proxy else {}).items():
        if name.lower() in _NEVER_SET or name.lower() in sent_by_app:
            continue  # the app's Nango-Proxy-<name> replaces it: nothing of the template's is needed
        rendered = _template_header(template, name, value, scope)
        if rendered is not None:
            headers[name] = rendered
    forwarded: set[str] = set()
    for name, value in client_headers.items():
        if name.lower().startswith(_PREFIX):
            upstream_name = name[len(_PREFIX) :]
            if not upstream_name or upstream_name.lower() in _NEVER_SET:
                continue
            if upstream_name.lower() in forwarded:
                headers.add(upstream_name, value)  # a repeated header stays repeated
            else:
                headers[upstream_name] = value  # replaces what the template or credentials set
                forwarded.add(upstream_name.lower())

    decompress = client_headers.get("Decompress", "").strip().lower() == "true" or bool(proxy and proxy.decompress)
    if not decompress and "Accept-Encoding" not in headers:
        # The body goes back as the upstream encoded it, so ask only for what the client can read.
        headers["Accept-Encoding"] = client_headers.get("Accept-Encoding", "identity")
    return Target(url=url, headers=headers, decompress=decompress)

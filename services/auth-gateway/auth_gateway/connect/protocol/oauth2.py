"""OAuth 2 authorization code: the authorization URL (spec §5.2 to §5.3) and the code exchange (§5.4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit
from uuid import uuid4

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from keyway_shared.credentials.oauth2_grant import exchange_authorization_code
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.credentials.token_hooks import CodeGrant
from keyway_shared.providers import ProviderTemplate
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError, interpolate
from keyway_shared.providers.rendering import render_url

from ...operations.flow_errors import FlowError

__all__ = [
    "authorization_url",
    "config_to_store",
    "exchange_code",
    "new_code_verifier",
    "pick_metadata",
    "resolve_url",
]


def new_code_verifier() -> str:
    return str(generate_token(48))


def _unsafe(exc: UnsafeParamError, what: str) -> FlowError:
    return FlowError("url_param_err", f"The {what} cannot use params[{exc.name}]: it {exc.reason}.")


def resolve_url(
    template_url: str | None,
    connection_config: dict[str, Any],
    *,
    what: str,
    template: ProviderTemplate | None = None,
) -> str:
    """A flow's URL from the configuration given at connect time, checked so that no value can move
    it (``template`` adds the patterns its catalog entry declares)."""
    if not template_url:
        raise FlowError("provider_config_err", f"The provider template has no {what}.")
    try:
        if template is not None:
            return template.render_url(template_url, connection_config)
        return render_url(template_url, connection_config)
    except MissingParamError as exc:
        names = ", ".join(f"params[{n}]" for n in exc.names)
        raise FlowError("url_param_err", f"The {what} needs {names}, which the request did not give.") from None
    except UnsafeParamError as exc:
        raise _unsafe(exc, what) from None


def check_connection_config(template: ProviderTemplate, connection_config: dict[str, Any]) -> None:
    """Every URL and header the connection will use must take these values: refuse them now, before
    the user consents, rather than at the first refresh or proxy call."""
    try:
        template.check_connection_config(connection_config)
    except UnsafeParamError as exc:
        raise _unsafe(exc, "provider's URLs and headers") from None


# What a parameter named in ``authorization_url_skip_encode`` keeps as written: everything a query
# value may hold except what would end it or start another (``&``, ``#``) or a space (Nango's
# ``new URL`` writes that as %20 too). Attio and Pennylane want ``scope=a+b``, not ``scope=a%2Bb``.
_AS_WRITTEN = "/?:@!$'()*+,;=~[]%"


def _with_params(
    url: str, params: dict[str, str], *, skip_encode: frozenset[str], skip_empty: bool, fragment: str | None
) -> str:
    """``url`` with ``params`` over its own query, empty ones dropped when ``skip_empty``; with
    ``fragment`` the query goes after it (``https://app.apollo.io/#oauth/authorize?client_id=...``,
    as Nango writes it)."""
    parts = urlsplit(url)
    merged = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(params)
    if skip_empty:
        merged = {name: value for name, value in merged.items() if value != ""}
    query = "&".join(
        f"{quote_plus(name)}={quote(value, safe=_AS_WRITTEN) if name in skip_encode else quote_plus(value)}"
        for name, value in merged.items()
    )
    if fragment is not None:
        path = parts.path or "/"
        return urlunsplit((parts.scheme, parts.netloc, path, "", "")) + "#" + fragment + ("?" + query if query else "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _template_params(template: ProviderTemplate, connection_config: dict[str, Any]) -> dict[str, str]:
    """The template's ``authorization_params`` with ``${connectionConfig.x}`` filled, as Nango fills
    them (BigCommerce's ``context: stores/${connectionConfig.storeHash}``), and ``${random}`` a new
    UUID (a nonce). The values are percent-encoded afterwards, so any text is safe; the catalog's
    patterns still apply."""
    values = {**connection_config, "random": str(uuid4())}
    params: dict[str, str] = {}
    for name, value in template.authorization_params.items():
        try:
            params[name] = interpolate(value, values, patterns=template.field_patterns()) if "${" in value else value
        except MissingParamError as exc:
            names = ", ".join(f"params[{n}]" for n in exc.names)
            raise FlowError("url_param_err", f"The authorization parameters need {names}.") from None
        except UnsafeParamError as exc:
            raise _unsafe(exc, "authorization parameters") from None
    return params


def authorization_url(
    *,
    template: ProviderTemplate,
    provider: str,
    client_id: str,
    redirect_uri: str,
    scopes: list[str],
    state: str,
    code_verifier: str | None,
    connection_config: dict[str, Any],
    request_params: dict[str, str],
    user_scope: str | None,
) -> str:
    """Parameters in Nango's order; later ones win, and a request value of ``undefined`` removes one.

    The template's flags as Nango's oauth controller reads them: ``authorization_url_skip_encode``
    names parameters sent as written (``scopes`` is the ``scope`` parameter; ``base_url`` is about
    the URL's placeholders, which are checked here, never left raw), ``authorization_url_skip_empty``
    drops empty ones, ``authorization_url_fragment`` puts the query after a fragment."""
    check_connection_config(template, connection_config)
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": template.scope_separator.join(scopes),
        "state": state,
    }
    params.update(_template_params(template, connection_config))
    if code_verifier is not None:
        params["code_challenge"] = create_s256_code_challenge(code_verifier)
        params["code_challenge_method"] = "S256"
    if user_scope and provider.startswith("slack"):
        params["user_scope"] = user_scope
    for key, value in request_params.items():
        if value == "undefined":
            params.pop(key, None)
        else:
            params[key] = value
    skip_encode = frozenset(template.authorization_url_skip_encode) | (
        {"scope"} if "scopes" in template.authorization_url_skip_encode else set()
    )
    base = resolve_url(template.authorization_url, connection_config, what="authorization URL", template=template)
    url = _with_params(
        base,
        params,
        skip_encode=skip_encode,
        skip_empty=template.authorization_url_skip_empty,
        fragment=template.authorization_url_fragment,
    )
    for old, new in template.authorization_url_replacements.items():
        url = url.replace(old, new)
    return url


def config_to_store(
    template: ProviderTemplate,
    connect_config: dict[str, Any],
    *,
    callback_query: dict[str, Any],
    token_response: dict[str, Any],
) -> dict[str, Any]:
    """The connection configuration an authorization ends with.

    What the browser gave at connect time, except the fields the provider's token response fills
    (only the provider names those: they may later fill a whole proxy origin); the callback's
    ``redirect_uri_metadata``, except fields some URL or header of the template uses (a callback's
    query is the browser's to write, and must never steer a URL, now or at a later refresh or proxy
    call); then the token response's ``token_response_metadata``.
    """
    provider_owned = set(template.token_response_metadata)
    steering = template.connection_config_variables()
    config = {name: value for name, value in connect_config.items() if name not in provider_owned}
    from_callback = pick_metadata(callback_query, template.redirect_uri_metadata)
    config |= {name: value for name, value in from_callback.items() if name not in steering}
    config |= pick_metadata(token_response, template.token_response_metadata)
    return config


def pick_metadata(source: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Values at dot paths (``team.id``), keyed by the path as Nango stores them."""
    picked: dict[str, Any] = {}
    for path in paths:
        value: Any = source
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            picked[path] = value
    return picked


async def exchange_code(
    session: aiohttp.ClientSession,
    *,
    template: ProviderTemplate,
    token_url: str,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    client_id: str,
    client_secret: str,
    now: datetime,
    timeout_seconds: float,
    connection_config: dict[str, Any] | None = None,
) -> tuple[OAuth2Credentials, datetime | None, dict[str, Any]]:
    """(credentials, expires_at, raw token response) for an authorization code, through the
    template's token hook as the shared refresh goes (``keyway_shared.credentials.oauth2_grant``);
    ``connection_config`` is the one given at connect time (token headers, hooks' URLs)."""
    return await exchange_authorization_code(
        session,
        template=template,
        token_url=token_url,
        grant=CodeGrant(code=code, redirect_uri=redirect_uri, code_verifier=code_verifier),
        client_id=client_id,
        client_secret=client_secret,
        connection_config=connection_config or {},
        now=now,
        timeout_seconds=timeout_seconds,
    )

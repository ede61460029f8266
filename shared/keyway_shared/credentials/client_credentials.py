"""OAuth 2 client credentials (spec §5.8): a token for the client itself, minted at connect time and
minted again, the same way, whenever it runs out (the token-refresher calls this too).
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ..providers import ProviderTemplate
from .errors import PermanentTokenError
from .jwt_signing import sign_jwt
from .oauth2_client import request_token, template_params
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


_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _jwk_pem(client_private_key: str) -> tuple[str, str | None]:
    """The PEM and ``kid`` of a private JWK given as JSON text (how Nango's okta-cc form takes it)."""
    from authlib.deprecate import AuthlibDeprecationWarning  # here: authlib.jose is not loaded at start-up

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
        from authlib.jose import JsonWebKey

    refused = PermanentTokenError(
        "invalid_client_private_key_format", "The client private key is not a private JWK (JSON with kty, d, ...)."
    )
    try:
        jwk = json.loads(client_private_key)
    except ValueError:
        raise refused from None
    if not isinstance(jwk, dict) or "d" not in jwk:
        raise refused
    try:
        key = JsonWebKey.import_key(jwk)
        pem = key.as_pem(is_private=True)
    except Exception:  # authlib raises several kinds for a bad key; none may quote it
        raise refused from None
    kid = jwk.get("kid")
    return pem.decode() if isinstance(pem, bytes) else str(pem), kid if isinstance(kid, str) else None


def client_assertion(*, token_url: str, client_id: str, client_private_key: str, now: datetime) -> str:
    """RFC 7523 client authentication as Nango's ``private_key_jwt`` signs it: RS256 with the JWK's
    ``kid``; ``iss`` and ``sub`` the client, ``aud`` the token URL, five minutes, a fresh ``jti``."""
    pem, kid = _jwk_pem(client_private_key)
    issued = int(now.timestamp())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": issued, "exp": issued + 300}
    claims["jti"] = str(uuid.uuid4())
    return sign_jwt(private_key=pem, algorithm="RS256", claims=claims, kid=kid)


def _client_params(
    template: ProviderTemplate, token_url: str, client_id: str, client_secret: str, key: str | None, now: datetime
) -> dict[str, str] | None:
    """The client's credentials as parameters, when ``token_request_auth_method`` puts them there
    (None: the body or a Basic header, as :func:`..oauth2_client.client_request` decides)."""
    method = template.token_request_auth_method
    if method == "custom":  # ZoomInfo: the client as a user name and password
        if not client_secret:
            raise PermanentTokenError("missing_client_secret", "This provider needs the client secret.")
        return {"username": client_id, "password": client_secret}
    if method == "private_key_jwt":
        if not key:
            raise PermanentTokenError("missing_client_private_key", "This provider needs the client's private key.")
        assertion = client_assertion(token_url=token_url, client_id=client_id, client_private_key=key, now=now)
        return {"client_id": client_id, "client_assertion_type": _JWT_BEARER, "client_assertion": assertion}
    return None


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
    client_private_key: str | None = None,
) -> tuple[ClientCredentials, datetime | None]:
    """Nango's OAUTH2_CC credentials ``{type, token, client_id, client_secret, expires_at?, raw}``.

    ``token_url`` is already interpolated. The client authenticates in the body (form or JSON, as
    the template's ``body_format`` says) or, for ``authorization_method: header`` or
    ``token_request_auth_method: basic``, with a Basic header only; ``custom`` sends them as
    ``username``/``password`` and ``private_key_jwt`` signs a client assertion with
    ``client_private_key`` (a private JWK), as Nango's ``getOauthClientCredentials`` does. The
    template's ``token_params`` are evaluated from ``connection_config``.
    """
    config = connection_config or {}
    client = _client_params(template, token_url, client_id, client_secret, client_private_key, now)
    params: dict[str, str] = dict(client or {})
    params.update({"grant_type": "client_credentials"})
    params.update(template_params(template, template.token_params, config))
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
        connection_config=config,
        client_in_params=client is not None,
    )
    token, expires_at = _token_and_expiry(raw, now, template)
    kept: dict[str, Any] = {"client_private_key": client_private_key} if client_private_key else {}
    credentials = ClientCredentials(
        token=token,
        client_id=client_id,
        client_secret=client_secret,
        expires_at=js_iso(expires_at) if expires_at is not None else None,
        raw=raw,
        **kept,
    )
    return credentials, expires_at

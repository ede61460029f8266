"""The standard OAuth 2 grants, as a hook: what every template gets unless its ``token_hook`` names
another, and what a provider's hook overrides where the provider differs (spec §5.4, §5.6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from ...providers import ProviderTemplate
from ...providers.interpolation import TemplateParamError
from ..errors import PermanentTokenError
from ..oauth2_client import request_token, template_params, token_headers
from ..shapes import OAuth2Credentials
from ..token_http import call_token_endpoint

__all__ = ["CodeGrant", "TokenCall", "TokenHook"]


@dataclass(frozen=True, kw_only=True)
class TokenCall:
    """One grant's dealings with the provider: where it goes, as whom, for which connection."""

    http: aiohttp.ClientSession
    template: ProviderTemplate
    url: str  # the rendered token URL (the refresh URL for a refresh)
    client_id: str
    client_secret: str
    # The connection's configuration: for a refresh the stored one; for a code exchange what it will
    # store, the token response's ``token_response_metadata`` included once there is one.
    connection_config: Mapping[str, Any]
    now: datetime
    timeout_seconds: float

    def with_config(self, connection_config: Mapping[str, Any]) -> TokenCall:
        return replace(self, connection_config=connection_config)

    async def post_token(self, params: dict[str, str], *, url: str | None = None) -> dict[str, Any]:
        """The template's kind of token request (its client authentication, body format and headers)."""
        return await request_token(
            self.http,
            token_url=url or self.url,
            template=self.template,
            params=params,
            client_id=self.client_id,
            client_secret=self.client_secret,
            timeout_seconds=self.timeout_seconds,
            connection_config=self.connection_config,
        )

    async def get_token(self, url: str, query: dict[str, str]) -> dict[str, Any]:
        """A GET whose query carries the grant (Meta's long-lived tokens); the query, secrets and
        all, is never logged: failures name the host only."""
        parts = urlsplit(url)
        full = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        headers = {"Accept": "application/json", "User-Agent": "Keyway"}
        headers |= token_headers(self.template, self.connection_config)
        return await call_token_endpoint(self.http, "GET", full, headers=headers, timeout_seconds=self.timeout_seconds)

    def template_url(self, url: str | None, what: str) -> str:
        """Another of the template's URLs, filled from the connection's configuration."""
        if not url:
            raise PermanentTokenError("missing_token_url", f"The provider template has no {what}.")
        try:
            return self.template.render_url(url, self.connection_config, stored=True)
        except TemplateParamError as exc:
            raise PermanentTokenError("invalid_connection_config", f"The {what} cannot be filled: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class CodeGrant:
    """What the callback brought, and what the authorization started with."""

    code: str
    redirect_uri: str
    code_verifier: str | None


class TokenHook:
    """The standard grants. Each method answers a token response (a dict read as Nango reads one);
    a hook overrides the methods where its provider differs and inherits the rest."""

    async def exchange(self, call: TokenCall, grant: CodeGrant) -> dict[str, Any]:
        """The authorization code for a token (RFC 6749 §4.1.3), with the template's ``token_params``."""
        params: dict[str, str] = {"grant_type": "authorization_code"}
        params.update(template_params(call.template, call.template.token_params, call.connection_config))
        params.update({"code": grant.code, "redirect_uri": grant.redirect_uri})
        if grant.code_verifier is not None:
            params["code_verifier"] = grant.code_verifier
        return await call.post_token(params)

    async def refresh(self, call: TokenCall, credentials: OAuth2Credentials) -> dict[str, Any]:
        """The refresh token for a new token (RFC 6749 §6), with the template's ``refresh_params``
        (else its ``token_params`` but the grant type)."""
        if not credentials.refresh_token:
            raise PermanentTokenError("missing_refresh_token", "The connection has no refresh token to refresh with.")
        template = call.template
        extra = template.refresh_params or {k: v for k, v in template.token_params.items() if k != "grant_type"}
        filled = template_params(template, extra, call.connection_config, what="refresh request")
        params = {**filled, "grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
        return await call.post_token(params)

    async def expiry(self, call: TokenCall, credentials: OAuth2Credentials) -> datetime | None:
        """When credentials expire whose token response did not say; None when unknown (then the
        template's ``token_expires_in_ms`` applies, or no expiry at all)."""
        return None

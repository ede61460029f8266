"""OAuth 1.0a, three-legged (spec §5.9): request token, user authorization, access token.

Requests are signed by authlib (HMAC-SHA1, RSA-SHA1 or PLAINTEXT, in the Authorization header)
and sent through the gateway's egress-guarded session. Token answers are form-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from keyway_shared.credentials import PermanentTokenError
from keyway_shared.credentials.token_http import call_token_endpoint
from keyway_shared.providers import ProviderTemplate

if TYPE_CHECKING:
    from authlib.oauth1.rfc5849.client_auth import ClientAuth

__all__ = ["OAuth1Client", "authorization_url", "with_query"]

_SIGNATURE_METHODS = {"HMAC-SHA1", "RSA-SHA1", "PLAINTEXT"}
_FORM = "application/x-www-form-urlencoded"


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to (and overriding) its query string."""
    parts = urlsplit(url)
    merged = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(merged), parts.fragment))


def authorization_url(
    *, url: str, request_token: str, template: ProviderTemplate, scopes: list[str], request_params: dict[str, str]
) -> str:
    """Nango's order: ``oauth_token``, ``scope`` (even empty), template params, then the request's own."""
    params = {"oauth_token": request_token, "scope": template.scope_separator.join(scopes)}
    params.update(template.authorization_params)
    for key, value in request_params.items():
        if value == "undefined":
            params.pop(key, None)
        else:
            params[key] = value
    return with_query(url, params)


@dataclass(frozen=True, kw_only=True)
class OAuth1Client:
    """The consumer: its key and secret (an RSA private key PEM for RSA-SHA1), as the template signs."""

    session: aiohttp.ClientSession
    template: ProviderTemplate
    consumer_key: str
    consumer_secret: str
    timeout_seconds: float

    def _auth(self, **extra: Any) -> ClientAuth:
        # authlib's OAuth 1 modules load with the first OAuth 1 flow (a few providers use it), not
        # at start: ~0.2 MB an idle gateway (issue 19) does not hold.
        from authlib.oauth1.rfc5849.client_auth import ClientAuth

        method = (self.template.signature_method or "HMAC-SHA1").upper()
        if method not in _SIGNATURE_METHODS:
            raise PermanentTokenError("unsupported_signature_method", f"OAuth 1 signature method {method} is unknown.")
        if method == "RSA-SHA1":
            return ClientAuth(self.consumer_key, rsa_key=self.consumer_secret, signature_method=method, **extra)
        return ClientAuth(self.consumer_key, self.consumer_secret, signature_method=method, **extra)

    async def _send(
        self, auth: ClientAuth, http_method: str | None, url: str, params: dict[str, str]
    ) -> dict[str, str]:
        method = (http_method or "POST").upper()
        body = ""
        headers: dict[str, str] = {"User-Agent": "Keyway", "Accept": "*/*"}
        if method in {"GET", "DELETE", "HEAD"}:
            url = with_query(url, params) if params else url
        else:
            headers["Content-Type"] = _FORM
            body = urlencode(params)
        signed_url, signed_headers, signed_body = auth.prepare(method, url, headers, body)
        raw = await call_token_endpoint(
            self.session,
            method,
            signed_url,
            headers=dict(signed_headers),
            data=signed_body or None,
            timeout_seconds=self.timeout_seconds,
        )
        return {str(k): str(v) for k, v in raw.items()}

    async def request_token(self, *, request_url: str, callback: str) -> tuple[str, str]:
        """(request token, its secret); ``callback`` carries the session's ``state``."""
        auth = self._auth(redirect_uri=callback)
        raw = await self._send(auth, self.template.request_http_method, request_url, dict(self.template.request_params))
        token, secret = raw.get("oauth_token"), raw.get("oauth_token_secret")
        if not token or secret is None:
            raise PermanentTokenError("invalid_token_response", "The request-token answer has no oauth_token.")
        return token, secret

    async def access_token(
        self, *, token_url: str, request_token: str, request_token_secret: str, verifier: str
    ) -> dict[str, str]:
        """The provider's whole answer: ``oauth_token``, ``oauth_token_secret`` and whatever it adds."""
        auth = self._auth(token=request_token, token_secret=request_token_secret, verifier=verifier)
        raw = await self._send(auth, self.template.token_http_method, token_url, dict(self.template.token_params))
        if not raw.get("oauth_token") or "oauth_token_secret" not in raw:
            raise PermanentTokenError("invalid_token_response", "The access-token answer has no oauth_token.")
        return raw

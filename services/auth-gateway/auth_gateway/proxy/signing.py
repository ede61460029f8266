"""OAuth 1.0a signatures for the proxy's calls on OAUTH1 and TBA connections (RFC 5849).

No fixed header authenticates these connections: every attempt carries its own ``Authorization:
OAuth ...`` header, with a fresh nonce and timestamp, signed over the method, the upstream URL (its
query included) and a form body's parameters (§3.4.1). The consumer is the connection's own when it
was made with one (``config_override``), else, for TBA, the client an import put in its
configuration (``oauth_client_id``, as Nango copies it there), else the integration's.

- OAUTH1: the template's ``signature_method`` (HMAC-SHA1 when it names none), as Nango's proxy.
- TBA (NetSuite): HMAC-SHA256 and ``realm`` = the account id, upper-cased with ``-`` written ``_``
  (``123456-sb1`` → ``123456_SB1``), as NetSuite's TBA documentation and Nango's proxy write it.

The base string's parts (URI and parameter normalization, §3.6 encoding) and the HMAC-SHA1,
RSA-SHA1 and PLAINTEXT signatures are authlib's; authlib has no HMAC-SHA256, so that one is the
standard library's HMAC with §3.4.2's key. A published example, authlib's server-side check and an
independent recomputation hold it (tests/unit/test_proxy_signing.py).
No secret is logged, put in an error or in the signer's ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast, get_args
from urllib.parse import parse_qsl

from multidict import CIMultiDict
from yarl import URL

from keyway_shared.credentials.shapes import AwsSigV4Credentials, SignedCredentials, TbaCredentials
from keyway_shared.providers.template import ProviderTemplate
from keyway_shared.store import Connection
from keyway_shared.store.integrations import Integration, IntegrationStore

from ..http.errors import ApiError
from .aws_signing import AwsSigner
from .target import Target

__all__ = [
    "FORM",
    "HeaderRenewal",
    "RequestSigner",
    "SignatureMethod",
    "Signer",
    "is_form",
    "netsuite_realm",
    "request_signer",
    "signed_headers",
    "signer_for",
    "signs_body",
]

SignatureMethod = Literal["HMAC-SHA1", "HMAC-SHA256", "RSA-SHA1", "PLAINTEXT"]
_METHODS: frozenset[str] = frozenset(get_args(SignatureMethod))
_TBA_METHOD: SignatureMethod = "HMAC-SHA256"  # NetSuite's, and Nango's SIGNATURE_METHOD
FORM = "application/x-www-form-urlencoded"
_REALM = re.compile(r"[A-Z0-9_]+")  # what a NetSuite account id becomes; the header does not escape it


def netsuite_realm(account_id: str) -> str:
    """NetSuite's realm for an account: ``123456-sb1`` (as in its URLs) → ``123456_SB1``."""
    return account_id.strip().replace("-", "_").upper()


def is_form(content_type: str) -> bool:
    """Whether a body of this type is signed (RFC 5849 §3.4.1.3.1: form-encoded, single part)."""
    return content_type.split(";", 1)[0].strip().lower() == FORM


@dataclass(frozen=True, kw_only=True)
class Signer:
    """The consumer and token that sign a connection's requests; ``repr`` names the method only."""

    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)  # an RSA private key (PEM) for RSA-SHA1
    token: str = field(repr=False)
    token_secret: str = field(repr=False)
    signature_method: SignatureMethod
    realm: str | None = None

    def authorization(
        self,
        method: str,
        url: URL,
        *,
        body: bytes | None = None,
        content_type: str = "",
        nonce: str | None = None,
        timestamp: int | None = None,
    ) -> str:
        """The ``Authorization`` header of one attempt (a new nonce and timestamp unless given).

        Parameters are collected per RFC 5849 §3.4.1.3.1: the query's and, for a form body, the
        body's, both read as ``application/x-www-form-urlencoded``; any other body is not signed."""
        # authlib's OAuth 1 modules load with the first signed request (only OAuth 1 and NetSuite
        # TBA connections sign), not at start: ~0.2 MB an idle gateway (issue 19) does not hold.
        from authlib.oauth1.rfc5849.parameters import prepare_headers
        from authlib.oauth1.rfc5849.signature import normalize_base_string_uri, normalize_parameters
        from authlib.oauth1.rfc5849.util import escape

        oauth_params = [
            ("oauth_nonce", nonce or secrets.token_hex(16)),
            ("oauth_timestamp", str(int(time.time()) if timestamp is None else timestamp)),
            ("oauth_version", "1.0"),
            ("oauth_signature_method", self.signature_method),
            ("oauth_consumer_key", self.consumer_key),
            ("oauth_token", self.token),
        ]
        params = parse_qsl(url.raw_query_string, keep_blank_values=True)
        if body and is_form(content_type):
            params += parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        # §3.4.1.1: method, base string URI (§3.4.1.2) and normalized parameters (§3.4.1.3.2), each
        # encoded. Not authlib's construct_base_string: it decodes oauth_* values once more, which
        # would alter a consumer key holding a '%'.
        base_uri = normalize_base_string_uri(str(url.with_query(None).with_fragment(None)))
        normalized = normalize_parameters(params + oauth_params)
        base_string = "&".join((escape(method.upper()), escape(base_uri), escape(normalized)))
        oauth_params.append(("oauth_signature", self._signature(base_string)))
        header: str = prepare_headers(oauth_params, {}, realm=self.realm)["Authorization"]
        return header

    def _signature(self, base_string: str) -> str:
        from authlib.oauth1.rfc5849.signature import hmac_sha1_signature, plaintext_signature, rsa_sha1_signature
        from authlib.oauth1.rfc5849.util import escape

        if self.signature_method == "HMAC-SHA256":
            # RFC 5849 §3.4.2's key (both secrets encoded, joined by "&") with SHA-256 for SHA-1.
            key = f"{escape(self.consumer_secret)}&{escape(self.token_secret)}"
            digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha256).digest()
            return base64.b64encode(digest).decode("ascii")
        if self.signature_method == "HMAC-SHA1":
            return str(hmac_sha1_signature(base_string, self.consumer_secret, self.token_secret))
        if self.signature_method == "RSA-SHA1":
            return str(rsa_sha1_signature(base_string, self.consumer_secret))
        return str(plaintext_signature(self.consumer_secret, self.token_secret))


@dataclass(frozen=True)
class HeaderRenewal:
    """Headers rendered again for each attempt, for credentials whose template variables are made
    per request (``fresh_per_request``: a WSSE token's nonce is good once, so a retry needs a new one)."""

    render: Callable[[], CIMultiDict[str]]


# What signs each attempt: OAuth 1's signer (OAUTH1, TBA), SigV4's (AWS_SIGV4, aws_signing.py), or
# the template's headers rendered anew (SIGNATURE).
RequestSigner = Signer | AwsSigner | HeaderRenewal


def signs_body(signer: RequestSigner | None, content_type: str) -> bool:
    """Whether the request body must be read before the call: SigV4 signs any body's hash, OAuth 1
    a form's parameters."""
    if isinstance(signer, HeaderRenewal):
        return False
    return isinstance(signer, AwsSigner) or (signer is not None and is_form(content_type))


def signed_headers(signer: RequestSigner | None, method: str, target: Target, body: object) -> CIMultiDict[str]:
    """The headers of one attempt: ``target``'s, with a new signature unless the caller or the
    template set an ``Authorization`` of their own (which wins, as over a Bearer token)."""
    if isinstance(signer, HeaderRenewal):
        return signer.render()
    if signer is None or "Authorization" in target.headers:
        return target.headers
    if isinstance(signer, AwsSigner):
        return signer.signed(method, target, body)
    headers = target.headers.copy()
    content_type = headers.get("Content-Type", "")
    signed_body = body if isinstance(body, bytes) else None
    try:
        headers["Authorization"] = signer.authorization(method, target.url, body=signed_body, content_type=content_type)
    except (ValueError, TypeError):
        if signer.signature_method != "RSA-SHA1":
            raise
        raise ApiError(  # an RSA-SHA1 consumer secret that is no private key
            "unsupported_auth", "The integration's oauth_client_secret is not an RSA private key to sign with."
        ) from None
    return headers


def _method(credentials: SignedCredentials, template: ProviderTemplate | None) -> SignatureMethod:
    if isinstance(credentials, TbaCredentials):
        return _TBA_METHOD
    named = ((template.signature_method if template is not None else None) or "HMAC-SHA1").strip().upper()
    if named in _METHODS:
        return cast(SignatureMethod, named)
    raise ApiError("unsupported_auth", f"The proxy cannot sign with the OAuth 1 signature method {named}.")


def _realm(connection: Connection) -> str:
    account = (connection.connection_config or {}).get("accountId")
    if not isinstance(account, str) or not account.strip():
        raise ApiError(
            "missing_connection_config",
            "The TBA signature needs connectionConfig.accountId (the NetSuite account), "
            "which this connection does not have.",
        )
    realm = netsuite_realm(account)
    if not _REALM.fullmatch(realm):
        raise ApiError(
            "invalid_connection_config",
            "The TBA signature cannot use connectionConfig.accountId: a NetSuite account id is letters, "
            "digits, '-' and '_'.",
        )
    return realm


def _configured(connection: Connection, name: str) -> str | None:
    value = (connection.connection_config or {}).get(name)
    return value if isinstance(value, str) and value else None


def _consumer(
    credentials: SignedCredentials, connection: Connection, integration: Integration | None
) -> tuple[str | None, str | None]:
    """Key and secret, each from the first that has it: the connection's override, for TBA the
    client an import put in its configuration, then the integration's (Nango's order)."""
    key, secret = credentials.consumer_override()
    if isinstance(credentials, TbaCredentials):
        key = key or _configured(connection, "oauth_client_id")
        secret = secret or _configured(connection, "oauth_client_secret")
    if integration is not None:
        key = key or integration.oauth_client_id
        secret = secret or integration.oauth_client_secret
    return key, secret


def signer_for(connection: Connection, template: ProviderTemplate | None, integration: Integration | None) -> Signer:
    """The signer of ``connection``'s requests (OAUTH1 or TBA credentials).

    Refused (400, nothing sent) when the consumer is unknown, the template names a method this
    proxy cannot compute, or a TBA connection has no usable NetSuite account."""
    credentials = connection.credentials
    if not isinstance(credentials, SignedCredentials):
        raise TypeError("only OAUTH1 and TBA credentials sign requests")
    key, secret = _consumer(credentials, connection, integration)
    if not key or not secret:
        kind = "NetSuite TBA" if isinstance(credentials, TbaCredentials) else "OAuth 1"
        raise ApiError(
            "unsupported_auth",
            f"{kind} requests are signed with the integration's oauth_client_id and oauth_client_secret; "
            "set them on the integration.",
        )
    token, token_secret = credentials.signing_token()
    return Signer(
        consumer_key=key,
        consumer_secret=secret,
        token=token,
        token_secret=token_secret,
        signature_method=_method(credentials, template),
        realm=_realm(connection) if isinstance(credentials, TbaCredentials) else None,
    )


async def request_signer(
    connection: Connection, template: ProviderTemplate | None, integrations: IntegrationStore
) -> RequestSigner | None:
    """:func:`signer_for` the connection, its integration read only when the connection does not
    name its own consumer; SigV4's for AWS_SIGV4; None when its credentials do not sign (a header
    or nothing carries them)."""
    credentials = connection.credentials
    if isinstance(credentials, AwsSigV4Credentials):
        return AwsSigner.of(credentials)
    if not isinstance(credentials, SignedCredentials):
        return None
    key, secret = _consumer(credentials, connection, None)
    integration = None
    if not key or not secret:
        integration = await integrations.get(connection.environment, connection.provider_config_key)
    return signer_for(connection, template, integration)

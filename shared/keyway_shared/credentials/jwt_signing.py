"""Short-lived JWTs some providers take in place of a client secret: RS256 for GitHub Apps,
ES256 for App Store Connect. Keys arrive as PEM text, or as base64 of the PEM (how Nango stores them).

authlib's JOSE package and cryptography's key loading are imported on the first signature, not at
start-up: few connections need a JWT, and the two hold several MB in every idle service otherwise.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from typing import Any, Literal

from .errors import PermanentTokenError

__all__ = ["InvalidPrivateKeyError", "load_pem", "sign_jwt"]

Algorithm = Literal["RS256", "ES256"]


class InvalidPrivateKeyError(PermanentTokenError):
    """The private key is unreadable, encrypted, or of the wrong kind for the algorithm."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_private_key", description)


def load_pem(value: str) -> str:
    """The PEM text of a key given as PEM or as base64 of the PEM."""
    text = value.strip()
    if "-----BEGIN" in text:
        return text.replace("\\n", "\n") + "\n"  # a PEM pasted into JSON with escaped newlines
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidPrivateKeyError("The private key is neither PEM nor base64 of a PEM.") from None
    if "-----BEGIN" not in decoded:
        raise InvalidPrivateKeyError("The private key is neither PEM nor base64 of a PEM.")
    return decoded.strip() + "\n"


def _checked_key(pem: str, algorithm: Algorithm) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidPrivateKeyError("The private key is not a readable, unencrypted PEM private key.") from None
    if algorithm == "RS256" and not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidPrivateKeyError("RS256 needs an RSA private key.")
    if algorithm == "ES256" and not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"):
        raise InvalidPrivateKeyError("ES256 needs an elliptic-curve P-256 private key.")
    return key


def sign_jwt(*, private_key: str, algorithm: Algorithm, claims: dict[str, Any], kid: str | None = None) -> str:
    """A compact JWT with header ``{alg, typ: JWT[, kid]}``; ``private_key`` is PEM or base64 of a PEM."""
    key = _checked_key(load_pem(private_key), algorithm)
    header: dict[str, str] = {"alg": algorithm, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    token = _json_web_token(algorithm).encode(header, claims, key)
    return token.decode("ascii") if isinstance(token, bytes) else str(token)


def _json_web_token(algorithm: Algorithm) -> Any:
    from authlib.deprecate import AuthlibDeprecationWarning

    with warnings.catch_warnings():
        # authlib.jose is deprecated in favour of joserfc, authlib's successor package. authlib stays
        # the declared dependency until that switch, which only this module would see.
        warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
        from authlib.jose import JsonWebToken

    return JsonWebToken([algorithm])

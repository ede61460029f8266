"""Short-lived JWTs some providers take in place of a client secret or a password: RS256 for GitHub
Apps, ES256 for App Store Connect, whatever a JWT template declares (RSA, EC or an HMAC secret), and
the grants and client assertions of TWO_STEP templates (``two_step_jwt``). One signer for all.
Keys arrive as PEM text, or as base64 of the PEM (how Nango stores them).

authlib's JOSE package and cryptography's key loading are imported on the first signature, not at
start-up: few connections need a JWT, and the two hold several MB in every idle service otherwise.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from collections.abc import Mapping
from typing import Any

from ..providers.token_declaration import JWT_ALGORITHMS, JwtAlgorithm
from .errors import PermanentTokenError

__all__ = ["InvalidPrivateKeyError", "load_pem", "sign_jwt"]

# The curve each ES algorithm signs over (RFC 7518 §3.4): cryptography's name, and the one people know.
_CURVES = {"ES256": ("secp256r1", "P-256"), "ES384": ("secp384r1", "P-384"), "ES512": ("secp521r1", "P-521")}


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


def _checked_key(pem: str, algorithm: JwtAlgorithm) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidPrivateKeyError("The private key is not a readable, unencrypted PEM private key.") from None
    if JWT_ALGORITHMS[algorithm] == "RSA" and not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidPrivateKeyError(f"{algorithm} needs an RSA private key.")
    curve, known_as = _CURVES.get(algorithm, (None, None))
    if curve is not None and not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == curve):
        raise InvalidPrivateKeyError(f"{algorithm} needs an elliptic-curve {known_as} private key.")
    return key


def sign_jwt(
    *,
    private_key: str | bytes,
    algorithm: JwtAlgorithm,
    claims: Mapping[str, Any],
    kid: str | None = None,
    header: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWT with header ``{alg, typ: JWT[, kid]}`` and then ``header``'s fields.

    ``private_key`` is PEM or base64 of a PEM for RS, PS and ES algorithms, and the secret's bytes
    for HS ones (an empty secret is refused: it would sign with nothing)."""
    if JWT_ALGORITHMS[algorithm] == "HMAC":
        key: Any = private_key.encode() if isinstance(private_key, str) else private_key
        if not key:
            raise InvalidPrivateKeyError("The HMAC secret is empty.")
    else:
        text = private_key.decode("utf-8", errors="replace") if isinstance(private_key, bytes) else private_key
        key = _checked_key(load_pem(text), algorithm)
    fields: dict[str, Any] = {"alg": algorithm, "typ": "JWT"}
    if kid is not None:
        fields["kid"] = kid
    fields |= dict(header or {})
    fields["alg"] = algorithm  # the header may repeat it, never change it
    token = _json_web_token(algorithm).encode(fields, dict(claims), key)
    return token.decode("ascii") if isinstance(token, bytes) else str(token)


def _json_web_token(algorithm: JwtAlgorithm) -> Any:
    from authlib.deprecate import AuthlibDeprecationWarning

    with warnings.catch_warnings():
        # authlib.jose is deprecated in favour of joserfc, authlib's successor package. authlib stays
        # the declared dependency until that switch, which only this module would see.
        warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
        from authlib.jose import JsonWebToken

    return JsonWebToken([algorithm])

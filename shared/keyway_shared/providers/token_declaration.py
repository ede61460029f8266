"""What a template declares of a token Keyway makes itself rather than fetches: Nango's ``signature``
and ``token`` keys (JWT, SIGNATURE, and TWO_STEP templates that sign an assertion).

``signature.protocol`` says how: a JWT signed with an RSA, EC or HMAC key, or a WSSE UsernameToken.
``token`` says what: the signing key, the JWT's ``header`` and ``payload`` (template text, as
``${credentials.privateKeyId}``), and how long the token lives (``expires_in_ms``). Read from Nango's
``packages/types/lib/providers/provider.ts`` (``ProviderJwt``, ``ProviderSignature``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .expressions import ExpressionSyntaxError, check_syntax

__all__ = ["JWT_ALGORITHMS", "JwtAlgorithm", "SignatureDeclaration", "TokenDeclaration"]

# The JWT algorithms Keyway signs with, by the kind of key each needs: what Nango's jsonwebtoken
# signs (the PS family is RSA-PSS over the same keys; TWO_STEP assertions may ask for it).
JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"
]
JWT_ALGORITHMS: dict[str, Literal["RSA", "EC", "HMAC"]] = {
    **{f"RS{bits}": "RSA" for bits in (256, 384, 512)},
    **{f"PS{bits}": "RSA" for bits in (256, 384, 512)},
    **{f"ES{bits}": "EC" for bits in (256, 384, 512)},
    **{f"HS{bits}": "HMAC" for bits in (256, 384, 512)},
}


class SignatureDeclaration(BaseModel):
    model_config = ConfigDict(extra="allow")
    protocol: Literal["RSA", "EC", "HMAC", "WSSE"]
    # HMAC only: the signing key as hex (Ghost's secret, Nango's default) or as its UTF-8 text (Heymarket).
    hmac_secret_encoding: Literal["hex", "utf8"] | None = None  # None: hex

    @property
    def secret_is_text(self) -> bool:
        return self.hmac_secret_encoding == "utf8"  # noqa: S105 # an encoding's name, not a secret


class TokenDeclaration(BaseModel):
    model_config = ConfigDict(extra="allow")
    expires_in_ms: int = Field(gt=0)
    signing_key: str | None = None  # a JWT's; a WSSE token is made of the person's user name and password
    header: dict[str, Any] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _expressions_evaluate(self) -> TokenDeclaration:
        for where, text in self.template_texts():
            try:
                check_syntax(text)
            except ExpressionSyntaxError as exc:
                raise ValueError(f"token.{where}: {exc}") from None
        return self

    @property
    def algorithm(self) -> str | None:
        alg = self.header.get("alg")
        return alg if isinstance(alg, str) else None

    def template_texts(self) -> list[tuple[str, str]]:
        """Every template string of the declaration, with where it is (an array claim's items too)."""
        texts: list[tuple[str, str]] = []
        if self.signing_key is not None:
            texts.append(("signing_key", self.signing_key))
        for part in ("header", "payload"):
            for name, value in getattr(self, part).items():
                items = value if isinstance(value, list) else [value]
                texts.extend((f"{part}.{name}", item) for item in items if isinstance(item, str))
        return texts

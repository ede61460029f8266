"""A JWT signed as a template's ``token`` declaration says (the JWT mode; Nango's ``jwt.ts``
``createCredentials``): the person's fields fill the declared header, payload and signing key, and
the token lives ``expires_in_ms``. Nothing is fetched: minting again (connect, refresh) is signing again.

Where the values come from, as Nango has them: ``${credentials.x}`` is the field ``x`` the person
gave, ``${connectionConfig.x}`` the connection's configuration. A header field or claim whose values
are missing is left out (Apple's optional ``scope``); a missing signing key is the person's mistake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from ..providers.expressions import Scope, expand
from ..providers.interpolation import MissingParamError, UnsafeParamError
from ..providers.template import ProviderTemplate
from ..providers.token_declaration import JwtAlgorithm, TokenDeclaration
from .errors import PermanentTokenError
from .jwt_signing import InvalidPrivateKeyError, sign_jwt

__all__ = ["JwtFieldsError", "jwt_fields", "sign_declared_jwt"]

_ARMOUR = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_CREDENTIAL_PATH = re.compile(r"credentials\.([A-Za-z0-9_]+)(\.[A-Za-z0-9_.]+)?")
_OUTPUTS = frozenset({"type", "token", "expires_at"})  # what minting writes; never the person's


class JwtFieldsError(PermanentTokenError):
    """The fields the person gave cannot make this template's JWT (missing, or not of its pattern)."""


def _declared_names(template: ProviderTemplate) -> tuple[set[str], set[str]]:
    """The credential fields the template names (its form, its declaration), and of these the ones
    the declaration reads parts of (``${credentials.privateKey.secret}``: Ghost's ``id:secret`` key)."""
    names = set(template.credentials)
    split: set[str] = set()
    token = template.token
    for _, text in token.template_texts() if token is not None else []:
        for match in _CREDENTIAL_PATH.finditer(text):
            names.add(match.group(1))
            if match.group(2):
                split.add(match.group(1))
    return names, split


def jwt_fields(template: ProviderTemplate, body: Mapping[str, Any]) -> dict[str, Any]:
    """The person's fields as they are stored: those the template names, in the body's order; each
    that its form requires present and of its pattern; ``id:secret`` text split where the declaration
    reads ``.id`` and ``.secret`` (as Nango stores Ghost's key)."""
    names, split = _declared_names(template)
    fields = {name: value for name, value in body.items() if name in names and name not in _OUTPUTS}
    missing = [
        name
        for name, spec in template.credentials.items()
        if not (isinstance(spec, dict) and spec.get("optional") is True) and fields.get(name) in (None, "")
    ]
    if missing:
        raise JwtFieldsError("missing_credentials", f"The credentials need {', '.join(missing)}.")
    for name, spec in template.credentials.items():
        value, pattern = fields.get(name), spec.get("pattern") if isinstance(spec, dict) else None
        if isinstance(value, str) and isinstance(pattern, str) and not re.fullmatch(pattern, value):
            raise JwtFieldsError(
                "invalid_credentials", f"The credential '{name}' is not of the form the provider uses."
            )
    for name in split:
        value = fields.get(name)
        if isinstance(value, str) and ":" in value:
            key_id, _, secret = value.partition(":")
            fields[name] = {"id": key_id, "secret": secret}
    return fields


def _evaluated(value: Any, scope: Scope) -> Any:
    """A header field or claim filled in; None when it needs a value there is not (left out)."""
    if isinstance(value, list):
        items: list[str] = []
        for item in value:
            text = _evaluated(item, scope) if isinstance(item, str) else None
            items += [part.strip() for part in (text or "").split(",") if part.strip()]
        return items or None
    if not isinstance(value, str):
        return value
    try:
        return expand(value, scope, fallbacks=False)
    except MissingParamError:
        return None


def _signing_key(token: TokenDeclaration, template: ProviderTemplate, scope: Scope) -> str | bytes:
    try:
        text = expand(token.signing_key or "", scope, fallbacks=False)
    except MissingParamError as exc:
        names = ", ".join(name.removeprefix("credentials.") for name in exc.names)
        raise JwtFieldsError("missing_credentials", f"The signing key needs {names}.") from None
    signature = template.signature
    if signature is not None and signature.protocol == "HMAC":
        if signature.secret_is_text:
            return text.encode()
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise InvalidPrivateKeyError("The secret is not the hexadecimal text the provider gives.") from None
    armour = _ARMOUR.search(text)
    if armour is None:
        return text  # base64 of a PEM, or nothing readable: sign_jwt says which
    # Nango's formatPem: a key pasted on one line, or with escaped newlines, is the same key.
    body = re.sub(r"-----(BEGIN|END) [^-]+-----|\\n|\s", "", text)
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    kind = armour.group(1)
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----\n"


def sign_declared_jwt(
    template: ProviderTemplate, fields: Mapping[str, Any], connection_config: Mapping[str, Any], *, now: datetime
) -> tuple[str, datetime]:
    """The JWT the template declares, signed now, and when it expires."""
    token = template.token
    if token is None or token.algorithm is None:
        raise PermanentTokenError("invalid_provider_template", "The provider template declares no JWT.")
    scope = Scope(values={"credentials": dict(fields)}, config=dict(connection_config), now=now)
    lifetime = timedelta(milliseconds=token.expires_in_ms)
    issued = int(now.timestamp())
    try:
        header = {name: v for name, value in token.header.items() if (v := _evaluated(value, scope)) is not None}
        claims = {name: v for name, value in token.payload.items() if (v := _evaluated(value, scope)) is not None}
        claims["iat"] = issued
        claims["exp"] = issued + int(lifetime.total_seconds())
        key = _signing_key(token, template, scope)
        jwt = sign_jwt(private_key=key, algorithm=cast(JwtAlgorithm, token.algorithm), claims=claims, header=header)
    except UnsafeParamError:
        # A claim computed from the key (Snowflake's fingerprint) when the key is not one.
        raise InvalidPrivateKeyError("The private key is not a readable, unencrypted PEM private key.") from None
    return jwt, now + lifetime

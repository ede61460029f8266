"""The JWTs a TWO_STEP token request may carry, signed from a private key the person (or the
integration) gives: a JWT bearer grant's ``signature``/``token`` (Google service accounts, Salesforce,
ServiceNow: ``${token}`` in the parameters) and an RFC 7523 client ``assertion`` (Apple Business
Manager, Epic, Microsoft's certificate credentials, NetSuite, Workday: ``${credentials.assertion}``).

Read from Nango's ``auth/jwt.ts`` (``createCredentials``) and ``auth/assertion.ts``
(``generateJwtAssertion``): the header and claims are the template's, evaluated as expressions (a
claim whose values are missing is left out), then ``iat`` and ``exp``. An assertion is kept with the
connection's fields and signed again when it has expired, or for each request when the template
says ``singleUse``; one whose key came only with the connect call (``assertionOption``, never
stored) cannot be signed again, and then the connection must be connected again, as in Nango. SAML
assertions are not made (``two_step_unsupported``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from ..providers import ProviderTemplate
from ..providers.expressions import Scope, expand
from ..providers.interpolation import MissingParamError, UnsafeParamError
from ..providers.token_declaration import JWT_ALGORITHMS, JwtAlgorithm
from .errors import PermanentTokenError
from .jwt_signing import load_pem, sign_jwt

__all__ = ["jwt_expiry", "signed_values"]


def _claims(spec: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
    """The template's header or claims evaluated; a text whose values are missing is left out."""
    result: dict[str, Any] = {}
    for name, value in spec.items():
        if isinstance(value, str):
            try:
                result[name] = expand(value, scope)
            except MissingParamError:
                continue
            except UnsafeParamError as exc:
                raise PermanentTokenError(
                    "invalid_two_step_credentials", f"The JWT's {name} cannot use {exc.name}."
                ) from None
        else:
            result[name] = value
    return result


def _key(text: str, scope: Scope) -> str:
    try:
        return load_pem(expand(text, scope))
    except MissingParamError as exc:
        needed = ", ".join(exc.names)
        raise PermanentTokenError(
            "missing_two_step_credentials", f"The JWT needs the private key ({needed})."
        ) from None


def _sign(header: dict[str, Any], claims: dict[str, Any], pem: str) -> str:
    """Signed with the template's ``alg`` (RS256 when it names none) and its header's fields."""
    algorithm = str(header.get("alg") or "RS256")
    if JWT_ALGORITHMS.get(algorithm) not in ("RSA", "EC"):  # the key is a PEM: no HMAC secret here
        raise PermanentTokenError("two_step_unsupported", f"Keyway does not sign {algorithm} JWTs.")
    return sign_jwt(private_key=pem, algorithm=cast(JwtAlgorithm, algorithm), claims=claims, header=header)


def jwt_expiry(token: Any) -> datetime | None:
    """A JWT's ``exp``, read without checking the signature (only to know when to mint again)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _expired(assertion: Any, now: datetime) -> bool:
    expiry = jwt_expiry(assertion)
    return expiry is None or expiry <= now + timedelta(seconds=30)


def signed_values(
    template: ProviderTemplate, scope: Scope, fields: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """What the token request's expressions read beside the person's fields (``token``: the JWT
    bearer grant's), and what the connection keeps (``assertion``, used again while it lasts)."""
    extra = template.model_extra or {}
    values: dict[str, str] = {}
    kept: dict[str, str] = {}
    token_spec = template.token  # the same declaration a JWT template's token is signed from
    if template.signature is not None and token_spec is not None:
        issued = int(scope.now.timestamp())
        lifetime = token_spec.expires_in_ms // 1000
        claims = {**_claims(token_spec.payload, scope), "iat": issued, "exp": issued + lifetime}
        header = _claims(token_spec.header, scope)
        values["token"] = _sign(header, claims, _key(token_spec.signing_key or "", scope))
    assertion = extra.get("assertion")
    if isinstance(assertion, dict):
        if assertion.get("type", "saml") != "jwt":
            raise PermanentTokenError("two_step_unsupported", "Keyway does not make SAML assertions yet.")
        existing = fields.get("assertion")
        if assertion.get("singleUse") or _expired(existing, scope.now):
            try:
                pem = _key(str(assertion.get("key") or ""), scope)
            except PermanentTokenError as exc:
                if existing and exc.type == "missing_two_step_credentials":
                    message = "The client assertion has expired and its key was not kept: connect again."
                    raise PermanentTokenError("two_step_assertion_expired", message) from None
                raise
            issued = int(scope.now.timestamp())
            lifetime = int(assertion.get("lifetimeInSeconds") or 3600)
            claims = {"iat": issued, "exp": issued + lifetime, **_claims(assertion.get("payload") or {}, scope)}
            kept["assertion"] = _sign(_claims(assertion.get("header") or {}, scope), claims, pem)
        else:
            kept["assertion"] = str(existing)
    return values, kept

"""A connection's credentials, typed: one class per ``type``, as Nango names them (spec §3.2).

``parse_credentials`` reads a stored document into its class; ``dump()`` gives the document back
exactly as it was, keys in their order, unknown keys and ``raw`` included, so what is stored and
what ``GET /connection`` answers do not change by passing through the types. A class built in code
(``OAuth2Credentials(access_token=...)``) is the document of its arguments, in their order, with
``type`` first and the ``None`` ones left out; ``with_fields`` adds keys at the end.

Each class also says what does not depend on the mode that made it (CUSTOM stores APP or OAUTH2
credentials): whether a refresh renews it (``refreshable``) and how it authenticates a request to
the provider (``authorization()``, ``template_variables()``). A stored document that does not fit its
type's class, and any type this version does not know, is read as ``UnknownCredentials``, kept as
it is and used for nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from ..auth_modes import MODE_FACTS, AuthMode
from .errors import PermanentTokenError
from .importing import ImportBody, ImportRefusedError
from .tokens import js_iso, read_token_response
from .wsse import wsse_token

if TYPE_CHECKING:
    from ..providers.template import ProviderTemplate

__all__ = [
    "CREDENTIAL_SHAPES",
    "ApiKeyCredentials",
    "ApiKeyType",
    "AppCredentials",
    "AppStoreCredentials",
    "AppStoreType",
    "AppType",
    "AwsSigV4Credentials",
    "AwsSigV4Type",
    "BasicCredentials",
    "BasicType",
    "BillCredentials",
    "BillType",
    "ClientCredentials",
    "ClientCredentialsType",
    "Credentials",
    "CustomCredentials",
    "CustomType",
    "JwtCredentials",
    "JwtType",
    "NoCredentials",
    "NoCredentialsType",
    "NotImportedType",
    "OAuth1Credentials",
    "OAuth1Type",
    "OAuth2Credentials",
    "OAuth2Type",
    "SignatureCredentials",
    "SignatureType",
    "SignedCredentials",
    "TbaCredentials",
    "TbaType",
    "TwoStepCredentials",
    "TwoStepType",
    "UnknownCredentials",
    "UnusableCredentialsError",
    "import_credentials",
    "oauth2_credentials",
    "parse_credentials",
]

# Each class's ``type``, named, for a model that reads credentials off the wire by it (Nango's current
# ``POST /connections``) without writing the mode down again.
OAuth2Type: TypeAlias = Literal["OAUTH2"]
OAuth1Type: TypeAlias = Literal["OAUTH1"]
ClientCredentialsType: TypeAlias = Literal["OAUTH2_CC"]
AppType: TypeAlias = Literal["APP"]
AppStoreType: TypeAlias = Literal["APP_STORE"]
ApiKeyType: TypeAlias = Literal["API_KEY"]
BasicType: TypeAlias = Literal["BASIC"]
TbaType: TypeAlias = Literal["TBA"]
CustomType: TypeAlias = Literal["CUSTOM"]
NoCredentialsType: TypeAlias = Literal["NONE"]
JwtType: TypeAlias = Literal["JWT"]
SignatureType: TypeAlias = Literal["SIGNATURE"]
AwsSigV4Type: TypeAlias = Literal["AWS_SIGV4"]
BillType: TypeAlias = Literal["BILL"]
TwoStepType: TypeAlias = Literal["TWO_STEP"]
# The types that POST /connections takes and Keyway refuses (``connections_post="refuse"``), in the
# order Nango's schema lists them (an unknown type's error lists them so); a unit test holds the two.
NotImportedType: TypeAlias = Literal[ClientCredentialsType, AppType, CustomType]

_STORED = {"stored": True}  # the validation context of a stored document, read by its keys only


class UnusableCredentialsError(Exception):
    """These credentials cannot authenticate a request the way it is asked (``code`` is the API's)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Shape(BaseModel):
    """What every credentials class shares: the document it is, and what it is good for."""

    model_config = ConfigDict(extra="allow", frozen=True, validate_by_name=True, validate_by_alias=True)

    refreshable: ClassVar[bool] = False  # a refresh renews these before they expire (refresh/renew.py)
    # Their template variables are made anew for each request (SIGNATURE's WSSE token: its nonce is
    # good once), so the proxy renders the template's headers again for every attempt.
    fresh_per_request: ClassVar[bool] = False
    _document: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_document(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, _Shape):
            model._document = dict(data) if info.context == _STORED else cls._document_of(data)
        return model

    @classmethod
    def _document_of(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """The document a class built in code stands for: ``type`` first, then its arguments in order."""
        kind = cls.model_fields["type"].default
        document: dict[str, Any] = {"type": kind} if kind is not None else {}
        for name, value in arguments.items():
            if value is not None and name != "type":
                document[cls._key(name)] = value
        return document

    @classmethod
    def _key(cls, name: str) -> str:
        """The document's key for a field (``api_key`` is stored as ``apiKey``)."""
        field = cls.model_fields.get(name)
        return field.alias or name if field is not None else name

    def __repr_args__(self) -> Any:
        return [("type", self._document.get("type"))]  # never a secret in a log line

    def dump(self) -> dict[str, Any]:
        """The document: what is stored (encrypted), and what ``GET /connection`` answers."""
        return dict(self._document)

    def with_fields(self, **fields: Any) -> Self:
        """The same credentials with ``fields`` set; a new key goes last, as an assignment puts it."""
        document = self._document | {self._key(name): value for name, value in fields.items()}
        return self._stored(document)

    @classmethod
    def _stored(cls, document: dict[str, Any]) -> Self:
        # By the document's own keys only: a stored ``api_key`` is not an ``apiKey``.
        return cls.model_validate(document, context=_STORED, by_alias=True, by_name=False)

    def authorization(self) -> str | None:
        """The ``Authorization`` header a request to the provider carries; None when the template's
        headers or query authenticate it, or nothing does."""
        return None

    def template_variables(self) -> dict[str, str]:
        """``${accessToken}`` or ``${apiKey}`` for the template's headers and query parameters."""
        return {}

    def proxy_headers(self) -> dict[str, str]:
        """Headers besides ``Authorization`` that carry these credentials to the provider (BILL's
        session); the template's and the caller's headers of the same name win over them."""
        return {}

    def proxy_authorization(self, template_headers: Mapping[str, str]) -> str | None:
        """The ``Authorization`` the proxy adds before the template's own ``proxy.headers``, which it
        is given (a type may leave the header to them); ``authorization()`` for most types."""
        return self.authorization()

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        """Credentials of this type from an import's body (POST /connection), and when they expire."""
        raise TypeError(f"{cls.__name__} cannot be imported")  # a mode's imported_as names a type that can


class _Bearer(_Shape):
    """Credentials sent as ``Authorization: Bearer <token>``."""

    def bearer_token(self) -> str | None:
        raise NotImplementedError

    def authorization(self) -> str | None:
        token = self.bearer_token()
        if not token:
            raise UnusableCredentialsError(
                "invalid_credentials", "The connection holds no access token to call the API with."
            )
        return f"Bearer {token}"

    def template_variables(self) -> dict[str, str]:
        token = self.bearer_token()
        return {"accessToken": token} if token else {}


class _Signed(_Shape):
    """Credentials that sign each request (OAuth 1, NetSuite TBA): no fixed header carries them. The
    proxy signs every attempt with ``signing_token()`` and the consumer (auth_gateway/proxy/signing.py);
    a caller that can only add a header (a verification call, an enrichment) is refused."""

    def signing_token(self) -> tuple[str, str]:
        """The token and its secret, which sign a request together with the consumer's key and secret."""
        raise NotImplementedError

    def consumer_override(self) -> tuple[str | None, str | None]:
        """The consumer key and secret this connection was made with, when not the integration's."""
        override = self._document.get("config_override") or {}  # both classes' field, as stored
        key, secret = override.get("client_id"), override.get("client_secret")
        return (key if isinstance(key, str) and key else None, secret if isinstance(secret, str) and secret else None)

    def authorization(self) -> str | None:
        kind = self._document.get("type")
        # Only the proxy signs (per attempt); this is asked by calls that can only add a header.
        message = f"{kind} credentials sign each request; this call can only add a header, so it cannot use them."
        raise UnusableCredentialsError("invalid_auth_mode", message)


class OAuth2Credentials(_Bearer):
    type: OAuth2Type = "OAUTH2"
    access_token: str
    refresh_token: str | None = None
    expires_at: str | None = None  # JavaScript's ISO form
    raw: dict[str, Any] = Field(default_factory=dict)  # the provider's token response
    config_override: dict[str, Any] | None = None  # the OAuth client it was made with, when not the integration's

    refreshable: ClassVar[bool] = True

    def bearer_token(self) -> str | None:
        return self.access_token

    def override(self, name: Literal["client_id", "client_secret"]) -> str | None:
        value = (self.config_override or {}).get(name)
        return value if isinstance(value, str) and value else None

    @classmethod
    def from_token_response(
        cls,
        raw: dict[str, Any],
        *,
        now: datetime,
        previous_refresh_token: str | None = None,
        alternate_path: str | None = None,
        expires_in_ms: bool = False,
    ) -> tuple[Self, datetime | None]:
        """Nango's OAUTH2 credentials; the old refresh token is kept when the provider sends none.

        ``alternate_path`` and ``expires_in_ms`` are the template's
        ``alternate_access_token_response_path`` and ``expires_in_unit: milliseconds`` (see
        :func:`.tokens.read_token_response`)."""
        reading = read_token_response(raw, now=now, alternate_path=alternate_path, expires_in_ms=expires_in_ms)
        if reading.access_token is None:
            raise PermanentTokenError("invalid_token_response", "The token response has no access_token.")
        expires_at = reading.expires_at
        stored_raw = dict(raw)
        if expires_at is not None:
            stored_raw["expires_at"] = js_iso(expires_at)
        credentials = cls(
            access_token=reading.access_token,
            refresh_token=reading.refresh_token or previous_refresh_token or None,
            expires_at=js_iso(expires_at) if expires_at is not None else None,
            raw=stored_raw,
        )
        return credentials, expires_at

    def expiring_at(self, expires_at: datetime) -> Self:
        """The same credentials with an expiry learnt elsewhere than the token response (an
        introspection, a fixed lifetime), written where the response's own would be."""
        stamp = js_iso(expires_at)
        return self.with_fields(expires_at=stamp, raw={**self.raw, "expires_at": stamp})

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        """``raw`` is the body's, or the whole body when it has none; refresh token, expiry and client
        override follow when given."""
        access_token = body.required("access_token")
        expires_at = body.expiry()
        raw = body.raw()
        credentials = cls(access_token=access_token, raw=dict(body.body) if raw is None else raw)
        refresh_token = body.optional("refresh_token")
        if refresh_token:
            credentials = credentials.with_fields(refresh_token=refresh_token)
        if expires_at is not None:
            credentials = credentials.with_fields(expires_at=js_iso(expires_at))
        overrides = {
            name: value
            for name, value in (
                ("client_id", body.optional("oauth_client_id_override")),
                ("client_secret", body.optional("oauth_client_secret_override")),
            )
            if value
        }
        if overrides:
            credentials = credentials.with_fields(config_override=overrides)
        return credentials, expires_at


class OAuth1Credentials(_Signed):
    type: OAuth1Type = "OAUTH1"
    oauth_token: str
    oauth_token_secret: str
    raw: dict[str, Any] = Field(default_factory=dict)
    config_override: dict[str, Any] | None = None

    def signing_token(self) -> tuple[str, str]:
        return self.oauth_token, self.oauth_token_secret

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        credentials = cls(
            oauth_token=body.required("oauth_token"),
            oauth_token_secret=body.required("oauth_token_secret"),
            raw=body.raw() or {},
        )
        return credentials, None


class ClientCredentials(_Bearer):
    """OAuth 2 client credentials (``OAUTH2_CC``): the token, and the client that mints the next one."""

    type: ClientCredentialsType = "OAUTH2_CC"
    token: str | None = None
    access_token: str | None = None  # how some stored ones name the token
    client_id: str | None = None
    client_secret: str | None = None
    expires_at: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    refreshable: ClassVar[bool] = True

    def bearer_token(self) -> str | None:
        return self.token or self.access_token


class AppCredentials(_Bearer):
    """A GitHub App installation token (``APP``; an installed CUSTOM connection holds one too)."""

    type: AppType = "APP"
    access_token: str
    expires_at: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    refreshable: ClassVar[bool] = True

    def bearer_token(self) -> str | None:
        return self.access_token


class AppStoreCredentials(_Bearer):
    type: AppStoreType = "APP_STORE"
    access_token: str
    private_key: str | None = None  # base64 of the PEM, which signs the next token
    expires_at: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    refreshable: ClassVar[bool] = True

    def bearer_token(self) -> str | None:
        return self.access_token

    def private_key_pem(self) -> str:
        return base64.b64decode(self.private_key or "").decode()


class ApiKeyCredentials(_Shape):
    type: ApiKeyType = "API_KEY"
    api_key: str = Field(alias="apiKey")

    def template_variables(self) -> dict[str, str]:
        return {"apiKey": self.api_key} if self.api_key else {}

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        return cls(api_key=body.required("api_key")), None


class BasicCredentials(_Shape):
    type: BasicType = "BASIC"
    username: str
    password: str | None = None

    def authorization(self) -> str | None:
        pair = f"{self.username}:{self.password or ''}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        return cls(username=body.required("username"), password=body.optional("password") or ""), None


class TbaCredentials(_Signed):
    """NetSuite token-based auth (``TBA``)."""

    type: TbaType = "TBA"
    token_id: str
    token_secret: str
    config_override: dict[str, Any] | None = None

    def signing_token(self) -> tuple[str, str]:
        return self.token_id, self.token_secret

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        if not body.connection_config.get("accountId"):
            raise ImportRefusedError("missing_account_id", "TBA connections need connection_config.accountId.")
        return cls(token_id=body.required("token_id"), token_secret=body.required("token_secret")), None


class JwtCredentials(_Bearer):
    """A JWT Keyway signs (``JWT``): the person's fields (which differ by provider, kept as given),
    then the token and when it expires. The template's ``token`` declaration signs the next one from
    the fields (``credentials.declared_jwt``); the template's headers may send it other than as Bearer
    (Ghost's ``Authorization: Ghost <token>``)."""

    type: JwtType = "JWT"
    token: str | None = None
    expires_at: str | None = None  # JavaScript's ISO form

    refreshable: ClassVar[bool] = True

    def bearer_token(self) -> str | None:
        return self.token

    def signing_fields(self) -> dict[str, Any]:
        """What the person gave, which signs the next token."""
        return {key: value for key, value in self._document.items() if key not in ("type", "token", "expires_at")}

    @classmethod
    def signed(
        cls,
        template: ProviderTemplate,
        fields: Mapping[str, Any],
        connection_config: Mapping[str, Any],
        *,
        now: datetime,
    ) -> tuple[Self, datetime]:
        """``{type: "JWT", <the person's fields>, token, expires_at}``, as Nango stores them, signed now."""
        # Imported here: the signer (authlib, cryptography) is loaded by the services that sign, only.
        from .declared_jwt import sign_declared_jwt

        jwt, expires_at = sign_declared_jwt(template, fields, connection_config, now=now)
        return cls(**dict(fields), token=jwt, expires_at=js_iso(expires_at)), expires_at

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        """The template's fields from the body (as a Nango export holds them), signed now."""
        from .declared_jwt import jwt_fields

        template = body.declared_by()
        try:
            return cls.signed(template, jwt_fields(template, body.body), body.connection_config, now=body.now)
        except PermanentTokenError as exc:
            raise ImportRefusedError(exc.type, exc.description) from None


class SignatureCredentials(_Shape):
    """A WSSE signature made from a user name and password (``SIGNATURE``; Emarsys). ``token`` is the
    one made when connected or last refreshed, for an app that reads the connection and calls the API
    itself; the proxy makes a new one for each request (a nonce is good once), for the template's
    headers (``X-WSSE: ${accessToken}``)."""

    type: SignatureType = "SIGNATURE"
    username: str
    password: str
    token: str | None = None
    expires_at: str | None = None

    refreshable: ClassVar[bool] = True
    fresh_per_request: ClassVar[bool] = True

    @classmethod
    def made(cls, username: str, password: str, *, now: datetime, lifetime: timedelta) -> tuple[Self, datetime]:
        """New credentials with a token made ``now``, and when that token expires."""
        expires_at = now + lifetime
        token = wsse_token(username, password, now=now)
        return cls(username=username, password=password, token=token, expires_at=js_iso(expires_at)), expires_at

    def template_variables(self) -> dict[str, str]:
        return {"accessToken": wsse_token(self.username, self.password, now=datetime.now(UTC))}

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        token = body.declared_by().token
        lifetime = timedelta(milliseconds=token.expires_in_ms if token is not None else 0)
        return cls.made(body.required("username"), body.required("password"), now=body.now, lifetime=lifetime)


class AwsSigV4Credentials(_Shape):
    """AWS (``AWS_SIGV4``): the role the person named, and the temporary key STS gave for it, which
    signs each proxied request (Signature Version 4, auth_gateway/proxy/aws_signing.py) and is
    minted again, from the role, the external id and the region, before it expires."""

    type: AwsSigV4Type = "AWS_SIGV4"
    raw: dict[str, Any] = Field(default_factory=dict)
    role_arn: str
    region: str
    service: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: str | None = None  # JavaScript's ISO form
    external_id: str | None = None

    refreshable: ClassVar[bool] = True

    def authorization(self) -> str | None:
        raise UnusableCredentialsError(
            "invalid_auth_mode", "AWS SigV4 connections sign each request; only the proxy can call with them."
        )

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        """A temporary key obtained elsewhere (a Nango export): the key, its expiry, and the role,
        region, service and external id it is renewed with (the body's, else the connection's)."""
        config = body.connection_config

        def named(name: str, code: str) -> str:
            value = body.optional(name) or config.get(name)
            if not isinstance(value, str) or not value:
                raise ImportRefusedError(code, f"AWS_SIGV4 connections need '{name}' (or connection_config.{name}).")
            return value

        role_arn = named("role_arn", "missing_role_arn")
        region = named("region", "missing_aws_sigv4_region")
        service = named("service", "missing_aws_sigv4_service")
        access_key_id = body.required("access_key_id")
        secret_access_key = body.required("secret_access_key")
        session_token = body.required("session_token")
        expires_at = body.expiry()
        external_id = body.optional("external_id") or config.get("external_id")
        credentials = cls(
            raw=body.raw() or {},
            role_arn=role_arn,
            region=region,
            service=service,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            expires_at=js_iso(expires_at) if expires_at is not None else None,
            external_id=external_id if isinstance(external_id, str) and external_id else None,
        )
        return credentials, expires_at


class BillCredentials(_Shape):
    """Bill's Connect API (``BILL``): the login, kept to sign in again, and the session it gave."""

    type: BillType = "BILL"
    username: str
    password: str
    organization_id: str
    dev_key: str
    raw: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = None
    user_id: str | None = None
    expires_at: str | None = None

    refreshable: ClassVar[bool] = True

    def proxy_headers(self) -> dict[str, str]:
        # Bill's API takes both on every call (its "sessionId" and "devKey" request headers).
        return {"devKey": self.dev_key, **({"sessionId": self.session_id} if self.session_id else {})}

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        """The login, and the session when the body has one; without one, it is due now, so the first
        read or the refresher signs in."""
        session_id = body.optional("session_id")
        expires_at = body.expiry() if session_id else body.now
        credentials = cls(
            username=body.required("username"),
            password=body.required("password"),
            organization_id=body.required("organization_id"),
            dev_key=body.required("dev_key"),
            raw=body.raw() or {},
            session_id=session_id,
            user_id=body.optional("user_id"),
            expires_at=js_iso(expires_at) if expires_at is not None else None,
        )
        return credentials, expires_at


class TwoStepCredentials(_Bearer):
    """A token minted from a person's credentials at the template's token request (``TWO_STEP``).

    Stored as Nango stores it: the token, when it expires, the refresh token the response may give,
    the response itself (``raw``; text when the provider answers with the bare token), then the
    person's own fields (``apiKey``, ``username``, ...) at the top level, which mint the next one
    (``keyway_shared.credentials.two_step``) and which the template's headers read as
    ``${credentials.<field>}``."""

    type: TwoStepType = "TWO_STEP"
    token: str
    expires_at: str | None = None
    refresh_token: str | None = None
    raw: Any = Field(default_factory=dict)

    refreshable: ClassVar[bool] = True
    # The document's own keys; every other key is one of the person's fields or a response header's value.
    RESERVED: ClassVar[frozenset[str]] = frozenset({"type", "token", "expires_at", "refresh_token", "raw"})

    def bearer_token(self) -> str | None:
        return self.token

    def person_fields(self) -> dict[str, Any]:
        """What the person gave (and the response headers kept), without the token's own keys."""
        return {key: value for key, value in self._document.items() if key not in self.RESERVED}

    def proxy_authorization(self, template_headers: Mapping[str, str]) -> str | None:
        # As Nango: Bearer, unless a template header carries the token itself (``${accessToken}``)
        # or is the session cookie (``cookie: ${credentials._cookies}``, SAP Business One).
        for name, value in template_headers.items():
            if "${accessToken}" in value or (name.lower() == "cookie" and "${credentials._cookies}" in value):
                return None
        return self.authorization()

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        """``token`` required; ``expires_at``/``expires_in`` when it expires, ``refresh_token`` and
        ``raw`` when known, and ``credentials``: the person's fields that mint the next token."""
        token = body.required("token")
        given = {name: body.body.get(name) for name in ("expires_at", "expires_in", "no_expiration")}
        expires_at = body.expiry() if any(value not in (None, "", False) for value in given.values()) else None
        fields = body.body.get("credentials") or {}
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise ImportRefusedError("invalid_body", "'credentials' must be an object of strings.")
        if cls.RESERVED & set(fields):
            raise ImportRefusedError("invalid_body", "'credentials' may not name type, token, expires_at or raw.")
        credentials = cls(
            token=token,
            expires_at=js_iso(expires_at) if expires_at is not None else None,
            refresh_token=body.optional("refresh_token"),
            raw=body.raw() or {},
        )
        return credentials.with_fields(**fields), expires_at


class CustomCredentials(_Shape):
    """Nango's ``CUSTOM`` credentials, which a Nango import may bring; Keyway's CUSTOM flow stores
    APP or OAUTH2 credentials instead."""

    type: CustomType = "CUSTOM"


class NoCredentials(_Shape):
    """A connection without credentials (``NONE``): stored, and answered, as ``{}``."""

    type: NoCredentialsType | None = None

    @classmethod
    def from_import(cls, body: ImportBody) -> tuple[Self, datetime | None]:
        return cls(), None


class UnknownCredentials(_Shape):
    """A type this version does not know, or a document that does not fit its type: kept, never used."""

    type: Any = None

    def authorization(self) -> str | None:
        # Fail closed where the type would have authenticated the call: a malformed OAUTH2 or BASIC
        # document must not send the request unauthenticated. A type this version does not know
        # adds no header, as before (the template's headers or query may carry what it needs).
        kind = self._document.get("type")
        shape = CREDENTIAL_SHAPES.get(kind) if isinstance(kind, str) else None  # type: ignore[call-overload]
        if shape is not None and issubclass(shape, (_Bearer, BasicCredentials, _Signed, AwsSigV4Credentials)):
            raise UnusableCredentialsError(
                "invalid_credentials", f"The connection's stored {kind} credentials are incomplete."
            )
        return None


# The credentials the proxy signs each request with (``_Signed``'s classes), named once.
SignedCredentials: TypeAlias = OAuth1Credentials | TbaCredentials

Credentials: TypeAlias = (
    OAuth2Credentials
    | OAuth1Credentials
    | ClientCredentials
    | AppCredentials
    | AppStoreCredentials
    | ApiKeyCredentials
    | BasicCredentials
    | TbaCredentials
    | JwtCredentials
    | SignatureCredentials
    | TwoStepCredentials
    | CustomCredentials
    | NoCredentials
    | AwsSigV4Credentials
    | BillCredentials
    | UnknownCredentials
)

# The class of each stored ``type`` (NONE's credentials are stored without one, as ``{}``).
CREDENTIAL_SHAPES: dict[AuthMode, type[Credentials]] = {
    "OAUTH2": OAuth2Credentials,
    "OAUTH1": OAuth1Credentials,
    "OAUTH2_CC": ClientCredentials,
    "APP": AppCredentials,
    "APP_STORE": AppStoreCredentials,
    "API_KEY": ApiKeyCredentials,
    "BASIC": BasicCredentials,
    "TBA": TbaCredentials,
    "CUSTOM": CustomCredentials,
    "NONE": NoCredentials,
    "JWT": JwtCredentials,
    "SIGNATURE": SignatureCredentials,
    "AWS_SIGV4": AwsSigV4Credentials,
    "BILL": BillCredentials,
    "TWO_STEP": TwoStepCredentials,
}
_BY_TYPE: dict[str, type[Credentials]] = {kind: shape for kind, shape in CREDENTIAL_SHAPES.items()}


def parse_credentials(document: Mapping[str, Any]) -> Credentials:
    """The stored document as its class; ``dump()`` gives it back unchanged."""
    kind = document.get("type")
    shape = _BY_TYPE.get(kind) if isinstance(kind, str) else NoCredentials if not document else None
    try:
        return (shape or UnknownCredentials)._stored(dict(document))
    except ValidationError:
        return UnknownCredentials._stored(dict(document))


def oauth2_credentials(
    raw: dict[str, Any],
    *,
    now: datetime,
    previous_refresh_token: str | None = None,
    alternate_path: str | None = None,
    expires_in_ms: bool = False,
) -> tuple[OAuth2Credentials, datetime | None]:
    """Nango's OAUTH2 credentials from a token response (see ``OAuth2Credentials.from_token_response``)."""
    return OAuth2Credentials.from_token_response(
        raw,
        now=now,
        previous_refresh_token=previous_refresh_token,
        alternate_path=alternate_path,
        expires_in_ms=expires_in_ms,
    )


def import_credentials(mode: AuthMode, body: ImportBody) -> tuple[Credentials, datetime | None]:
    """The credentials an import of a connection in ``mode`` stores, and when they expire."""
    imported_as = MODE_FACTS[mode].imported_as
    if imported_as is None:
        raise ImportRefusedError(
            "invalid_auth_mode", f"Connections of auth mode {mode} cannot be imported; connect them instead."
        )
    return CREDENTIAL_SHAPES[imported_as].from_import(body)

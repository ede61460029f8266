"""The provider template schema (Nango's providers.yaml, spec §6), as a pydantic model.

It reads Nango's current catalog (npm ``@nangohq/providers``) as Nango means it: a retry hint may
name several headers (the first present wins), a verification several endpoints (tried in order),
a parameter written as a YAML number or boolean is the text that goes on the wire (``expiring: 1``
is ``"1"``, ``force_verify: false`` is ``"false"``, as JavaScript's ``String()`` writes them), and
URL and header templates may hold ``A || B`` fallbacks (see :mod:`.rendering`). Unknown keys are
kept (the catalog format grows), and the few known misspellings in the wild (``scope_seprator``)
are read as what they meant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..auth_modes import AUTH_MODES, MODE_FACTS, AuthMode, TypedField
from .enrichment.steps import PostConnectionStep
from .expressions import REQUEST_VARIABLES, ExpressionSyntaxError, Scope, check_syntax, variable_names
from .interpolation import MissingParamError
from .rendering import render_header, render_url
from .token_declaration import JWT_ALGORITHMS, SignatureDeclaration, TokenDeclaration
from .two_step_spec import TwoStepStep, TwoStepTokenResponse, check_body_expressions, scalar_params

__all__ = [
    "AUTH_MODES",
    "ProviderTemplate",
    "ProxyConfig",
    "ProxyRetry",
    "ProxyVerification",
    "WireText",
    "interpolation_variables",
]

_VARIABLE = re.compile(r"\$\{(?:connectionConfig\.)?([A-Za-z0-9_.-]+)\}")
# Variables that are never the connection configuration's: the request's and the integration's.
_NOT_CONFIG = REQUEST_VARIABLES | {"random", "clientId", "clientSecret"}


def _is_time(name: str) -> bool:
    return name == "now" or name.startswith(("now:", "now+", "now-"))


def interpolation_variables(text: str) -> set[str]:
    """The ``${connectionConfig.x}`` names a string refers to (``${apiKey}``-style ones included,
    inside ``base64(...)`` and the other functions too); not the request's ``${method}``-style
    variables, ``${now...}``, ``${random}`` or the integration's ``${clientId}``/``${clientSecret}``."""
    try:
        check_syntax(text)
    except ExpressionSyntaxError:
        return set(_VARIABLE.findall(text))
    names = set()
    for name in variable_names(text):
        if name.startswith("connectionConfig."):
            names.add(name.removeprefix("connectionConfig."))
        elif name not in _NOT_CONFIG and not _is_time(name):
            names.add(name)
    return names


def _credential_variable(name: str) -> bool:
    """``${apiKey}``, ``${accessToken}``, ``${credentials.raw.id_token}``: the credentials', not a person's."""
    return name in {"apiKey", "accessToken"} or name.startswith("credentials.")


def _wire_text(value: Any) -> Any:
    """A scalar as the text Nango sends for it; anything else is left for the type check to refuse."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return value


def _one_or_many(value: Any) -> Any:
    """``at: x-ratelimit-reset`` (Keyway's first shape) is ``at: [x-ratelimit-reset]`` (Nango's)."""
    return [value] if isinstance(value, str) else value


# A parameter, header or query value: what goes on the wire, so always text.
WireText = Annotated[str, BeforeValidator(_wire_text)]
WireParams = dict[str, WireText]
HeaderNames = Annotated[list[str], BeforeValidator(_one_or_many)]


class ProxyVerification(BaseModel):
    """One call that proves new credentials work. Nango's shape lists ``endpoints`` (tried in
    order, the first 2xx answer passes); Keyway's first shape's single ``endpoint`` is one more."""

    model_config = ConfigDict(extra="allow")
    method: str = "GET"
    endpoints: list[str] = Field(default_factory=list)
    endpoint: str | None = None
    base_url_override: str | None = None
    headers: WireParams = Field(default_factory=dict)
    data: Any = None  # sent as the JSON body, as Nango's proxy sends it

    @model_validator(mode="after")
    def _some_endpoint(self) -> ProxyVerification:
        if self.endpoint is not None and self.endpoint not in self.endpoints:
            self.endpoints = [self.endpoint, *self.endpoints]
        if not self.endpoints:
            raise ValueError("a verification needs 'endpoints' (a list of paths) or 'endpoint'")
        return self


class ProxyRetry(BaseModel):
    """Where an upstream says when to call again: header names, the first present one wins."""

    model_config = ConfigDict(extra="allow")
    at: HeaderNames | None = None  # a Unix time, or seconds from now when small
    after: HeaderNames | None = None  # delay-seconds or an HTTP date
    # Nango's other hints, kept for what reads the catalog; the proxy's retry decision does not use them.
    remaining: str | None = None
    error_code: list[WireText] = Field(default_factory=list)
    in_body: dict[str, Any] | None = None


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    base_url: str | None = None
    headers: WireParams = Field(default_factory=dict)
    query: WireParams = Field(default_factory=dict)
    retry: ProxyRetry | None = None
    decompress: bool | None = None
    forward_headers_on_redirect: bool | None = None
    paginate: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    connection_config: dict[str, Any] = Field(default_factory=dict)
    verification: ProxyVerification | None = None


class ProviderTemplate(BaseModel):
    model_config = ConfigDict(extra="allow")

    auth_mode: AuthMode
    display_name: str | None = None
    alias: str | None = None
    authorization_url: str | None = None
    token_url: str | dict[str, str] | None = None
    request_url: str | None = None
    refresh_url: str | None = None
    revocation_url: str | None = None
    authorization_params: WireParams = Field(default_factory=dict)
    token_params: WireParams = Field(default_factory=dict)
    refresh_params: WireParams = Field(default_factory=dict)
    request_params: WireParams = Field(default_factory=dict)
    scope_separator: str = " "
    default_scopes: list[str] = Field(default_factory=list)
    disable_pkce: bool = False
    authorization_method: Literal["body", "header"] | None = None
    # Nango's values; "query" (parameters in the token URL's query) and "custom"/"private_key_jwt"
    # client authentication are the token client's to honour (keyway_shared.credentials).
    body_format: Literal["form", "json", "query", "xml"] = "form"
    token_request_auth_method: Literal["basic", "custom", "private_key_jwt"] | None = None
    signature_method: str | None = None
    request_http_method: str | None = None
    token_http_method: str | None = None
    authorization_url_replacements: dict[str, str] = Field(default_factory=dict)
    redirect_uri_metadata: list[str] = Field(default_factory=list)
    token_response_metadata: list[str] = Field(default_factory=list)
    connection_configuration: list[str] = Field(default_factory=list)
    connection_config: dict[str, Any] = Field(
        default_factory=dict, description="connection configuration fields the user supplies (params[...])"
    )
    token_expiration_buffer: int | None = Field(default=None, description="seconds; refresh this long before expiry")
    # Nango's token-response fields: where the token is when the usual place is empty (Slack's
    # user-token-only installs put it under ``authed_user``), the unit of ``expires_in``, and a fixed
    # lifetime for providers whose answer gives none.
    alternate_access_token_response_path: str | None = None
    expires_in_unit: Literal["seconds", "milliseconds"] | None = None
    token_expires_in_ms: int | None = None
    token_headers: WireParams = Field(default_factory=dict)
    # Nango's authorization-URL flags: parameters sent as written, empty ones dropped, and where the
    # callback carries the code when not in ``code``.
    authorization_url_skip_encode: list[str] = Field(default_factory=list)
    authorization_url_skip_empty: bool = False
    authorization_url_fragment: str | None = None
    authorization_code_param_in_callback: str | None = None
    # What runs once a connection is made: Nango's script name (Keyway has a hook of that name,
    # keyway_shared.providers.enrichment) and Keyway's declarative steps, calls whose answers fill
    # ``connection_config`` fields.
    post_connection_script: str | None = None
    post_connection: list[PostConnectionStep] = Field(default_factory=list)
    # Provider-specific token handling beyond the standard grant (introspected expiry, long-lived
    # exchanges, custom bodies): the name of a hook in keyway_shared.credentials.token_hooks.
    token_hook: str | None = None
    # Refresh tokens this provider revokes when left unused this many days (Microsoft: 90): the
    # refresher refreshes such connections before then, whether anyone reads them or not.
    refresh_token_idle_days: int | None = None
    proxy: ProxyConfig | None = None
    docs: str | None = None
    categories: list[str] = Field(default_factory=list)
    # Nango's other fields, typed as its schema types them (scripts/validation/providers/schema.json);
    # Keyway reads some (docs, forms) and keeps the rest so that GET /provider answers as Nango does.
    docs_connect: str | None = None
    setup_guide_url: str | None = None
    credentials: dict[str, Any] = Field(default_factory=dict, description="the form fields of a credential")
    integration_config: dict[str, Any] = Field(default_factory=dict)
    installation: Literal["outbound"] | None = None
    token_url_skip_encode: list[str] = Field(default_factory=list)
    require_client_certificate: bool = False
    decode_url: bool = False
    available_scopes: list[str] = Field(default_factory=list)
    credentials_verification_script: str | None = None
    pre_connection_deletion_script: str | None = None
    pre_connection_creation_script: str | None = None
    webhook_routing_script: str | None = None
    webhook_user_defined_secret: bool = False
    webhook_allowed_query_params: list[str] = Field(default_factory=list)
    webhook_response_metadata: list[str] = Field(default_factory=list)
    authorization_code_param_in_webhook: str | None = None
    refresh_token_response_metadata: list[str] = Field(default_factory=list)
    refresh_token_params: WireParams = Field(default_factory=dict)
    refresh_token_headers: WireParams = Field(default_factory=dict)
    # MCP_OAUTH2: how Keyway's client is known to the authorization server (registered at
    # ``registration_url`` with ``registration_params``' grant and response types, named by Keyway's
    # client ID metadata document, or the integration's own), as Nango's provider schema types them.
    client_registration: Literal["dynamic", "static", "cimd"] | None = None
    registration_url: str | None = None
    registration_params: dict[str, Any] = Field(default_factory=dict)
    # A token Keyway makes itself (JWT, SIGNATURE): how it is signed, and what it holds.
    signature: SignatureDeclaration | None = None
    token: TokenDeclaration | None = None
    # TWO_STEP (two_step_spec.py): the token request's method, its body as written (``token_params``
    # with nested objects and JSON values kept; ``token_params`` holds its text parameters), where
    # the token is in the answer, the answer's headers to keep, and the requests that follow it.
    token_request_method: Literal["GET", "POST"] | None = None
    token_body: dict[str, Any] = Field(default_factory=dict)
    token_response: TwoStepTokenResponse | None = None
    token_response_headers: list[str] = Field(default_factory=list)
    additional_steps: list[TwoStepStep] = Field(default_factory=list)
    assertion_option: dict[str, Any] = Field(default_factory=dict)  # key material given at connect time only

    @model_validator(mode="before")
    @classmethod
    def _fix_known_typos(cls, data: Any) -> Any:
        if isinstance(data, dict) and "scope_seprator" in data and "scope_separator" not in data:
            data = dict(data)
            data["scope_separator"] = data.pop("scope_seprator")
        return data

    @model_validator(mode="before")
    @classmethod
    def _two_step_body(cls, data: Any) -> Any:
        """A TWO_STEP body is JSON (Tableau's sign-in nests objects, ECU360 sends ``false``): kept whole
        in ``token_body``, its text parameters also in ``token_params``."""
        if (
            isinstance(data, dict)
            and data.get("auth_mode") == "TWO_STEP"
            and isinstance(data.get("token_params"), dict)
        ):
            data = dict(data)
            check_body_expressions(data["token_params"], "token_params")
            data["token_body"] = data["token_params"]
            data["token_params"] = scalar_params(data["token_params"])
        return data

    @model_validator(mode="after")
    def _expressions_evaluate(self) -> ProviderTemplate:
        """Every header, parameter and query template is an expression Keyway can evaluate: an unknown
        function or an unclosed ``${`` stops the load here, not a request later."""
        for where, text in self._expression_fields():
            try:
                check_syntax(text)
            except ExpressionSyntaxError as exc:
                raise ValueError(f"{where}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _declares_its_token(self) -> ProviderTemplate:
        """A mode that makes its own token needs the template to say how (``signature`` and ``token``)."""
        protocols = MODE_FACTS[self.auth_mode].token_protocols
        if protocols:
            if self.signature is None or self.token is None:
                raise ValueError(f"{self.auth_mode} templates declare 'signature' and 'token'")
            if self.signature.protocol not in protocols:
                raise ValueError(f"{self.auth_mode} templates sign with one of {sorted(protocols)}")
            if self.signature.protocol != "WSSE":
                if self.token.signing_key is None:
                    raise ValueError("a JWT's 'token' declares its 'signing_key'")
                if JWT_ALGORITHMS.get(self.token.algorithm or "") != self.signature.protocol:
                    raise ValueError(
                        f"token.header.alg must be a {self.signature.protocol} algorithm Keyway signs with"
                    )
        return self

    def _expression_fields(self) -> list[tuple[str, str]]:
        fields: list[tuple[str, str]] = []
        for group in ("token_params", "refresh_params", "token_headers"):
            fields.extend((f"{group}.{name}", text) for name, text in getattr(self, group).items())
        if self.proxy is not None:
            fields.extend((f"proxy.headers.{name}", text) for name, text in self.proxy.headers.items())
            fields.extend((f"proxy.query.{name}", text) for name, text in self.proxy.query.items())
            if self.proxy.verification is not None:
                check = self.proxy.verification.headers
                fields.extend((f"proxy.verification.headers.{name}", text) for name, text in check.items())
        return fields

    def token_url_for(self, mode: str | None = None) -> str | None:
        if isinstance(self.token_url, dict):
            return self.token_url.get(mode or self.auth_mode) or next(iter(self.token_url.values()), None)
        return self.token_url

    def template_urls(self) -> list[str]:
        """Every URL that may carry ``${...}`` interpolations (the verification's base URL included)."""
        urls = [url for url in (self.authorization_url, self.request_url, self.refresh_url, self.revocation_url) if url]
        if isinstance(self.token_url, dict):
            urls.extend(self.token_url.values())
        elif self.token_url:
            urls.append(self.token_url)
        if self.proxy and self.proxy.base_url:
            urls.append(self.proxy.base_url)
        if self.proxy and self.proxy.verification and self.proxy.verification.base_url_override:
            urls.append(self.proxy.verification.base_url_override)
        return urls

    def template_headers(self) -> list[str]:
        """Every header value that may carry ``${...}`` interpolations."""
        if not self.proxy:
            return []
        check = self.proxy.verification
        return [*self.proxy.headers.values(), *(check.headers.values() if check else ())]

    def template_strings(self) -> list[str]:
        """Every URL, header value and proxy query value that may carry ``${...}`` interpolations."""
        return [*self.template_urls(), *self.template_headers(), *(self.proxy.query.values() if self.proxy else ())]

    def connection_config_variables(self) -> set[str]:
        """``${connectionConfig.x}`` names used anywhere in the template (credentials excluded)."""
        names: set[str] = set()
        for text in self.template_strings():
            names |= {n for n in interpolation_variables(text) if not _credential_variable(n)}
        return names

    def person_fields(self) -> dict[str, dict[str, Any]]:
        """The ``connection_config`` fields a person fills in, by name: not those the flow fills
        itself (``automated``), keeps out of sight (``hidden``), or keeps only so connections stored
        under an old name still render (``deprecated``)."""
        fields: dict[str, dict[str, Any]] = {}
        for name, spec in self.connection_config.items():
            spec = spec if isinstance(spec, dict) else {}
            if not (spec.get("automated") or spec.get("hidden") or spec.get("deprecated")):
                fields[name] = spec
        return fields

    def typed_credentials(self) -> tuple[TypedField, ...]:
        """What a person types to connect: the mode's fields, or, for a mode whose fields differ by
        provider (JWT, TWO_STEP), those this template's ``credentials`` declares (``typed_fields``);
        a PEM key gets a text area (it has lines), a secret is typed unseen."""
        typed = MODE_FACTS[self.auth_mode].typed
        if self.token_request_auth_method == "private_key_jwt":  # noqa: S105 - a method name
            # okta-cc signs a client assertion with a private JWK instead of sending a client secret.
            private_key = TypedField(name="client_private_key", label="Client private key (JWK)", kind="textarea")
            return tuple(private_key if f.name == "client_secret" else f for f in typed)
        if typed or (self.token is None and self.auth_mode != "TWO_STEP"):
            return typed
        fields = []
        for name, spec in self.typed_fields():
            pem = "private" in name.lower() and not spec.get("pattern")
            kind: Literal["text", "password", "textarea"] = (
                "textarea" if pem else "password" if spec.get("secret") else "text"
            )
            example, pattern = spec.get("example"), spec.get("pattern")
            fields.append(
                TypedField(
                    name=name,
                    label=str(spec.get("title") or name),
                    kind=kind,
                    required=spec.get("optional") is not True,
                    example=str(example) if example is not None else None,
                    pattern=str(pattern).removeprefix("^").removesuffix("$") if pattern else None,
                )
            )
        return tuple(fields)

    def person_credentials(self) -> dict[str, dict[str, Any]]:
        """The ``credentials`` fields a person types (TWO_STEP's, which differ by provider), by name:
        not those the flow fills (``automated``: an assertion) or keeps out of sight (``hidden``:
        a ``default_value``)."""
        return {
            name: spec
            for name, spec in (
                (name, spec if isinstance(spec, dict) else {}) for name, spec in self.credentials.items()
            )
            if not (spec.get("automated") or spec.get("hidden"))
        }

    def typed_fields(self) -> list[tuple[str, dict[str, Any]]]:
        """What a person types for a JWT or TWO_STEP connection, by the name the connect call's body gives
        it: the credentials (``person_credentials``), then the assertion's key material as
        ``assertionOption.<name>`` (used at connect time, never stored)."""
        options = [
            (f"assertionOption.{name}", spec if isinstance(spec, dict) else {})
            for name, spec in self.assertion_option.items()
        ]
        return [*self.person_credentials().items(), *options]

    def field_patterns(self) -> dict[str, str]:
        """The ``pattern`` each ``connection_config`` field declares, by field name."""
        return {
            name: field["pattern"]
            for name, field in self.connection_config.items()
            if isinstance(field, dict) and isinstance(field.get("pattern"), str) and field["pattern"]
        }

    def render_url(self, url: str, values: Mapping[str, Any], *, stored: bool = False) -> str:
        """One of this template's URLs filled from ``values`` (see :mod:`.rendering`); ``stored`` when
        the values are a stored connection's, whose token-response fields may fill a whole origin."""
        origin_fields = self.token_response_metadata if stored else ()
        return render_url(url, values, patterns=self.field_patterns(), origin_fields=origin_fields)

    def render_header(self, text: str, values: Mapping[str, Any] | Scope) -> str:
        """A header value evaluated from ``values`` (see :mod:`.expressions`), checked as
        :func:`.rendering.render_header` checks it."""
        return render_header(text, values, patterns=self.field_patterns())

    def check_connection_config(self, values: Mapping[str, Any]) -> None:
        """Refuse, before anything is sent, a connect-time value that some URL or header of this
        template could not take. Fields the token response fills are left out: the OAuth flow does
        not store a browser's value for them. Absent values are for the caller to require."""
        given = {name: value for name, value in values.items() if name not in self.token_response_metadata}
        for url in self.template_urls():
            self._check_with(url, given, self.render_url)
        for header in self.template_headers():
            self._check_with(header, given, self.render_header)

    @staticmethod
    def _check_with(text: str, given: Mapping[str, Any], render: Callable[[str, Mapping[str, Any]], str]) -> None:
        # Checked with the values there are: requiring the others is the caller's business.
        if interpolation_variables(text) & set(given):
            with suppress(MissingParamError):
                render(text, given)

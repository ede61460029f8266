"""The provider template schema (Nango's providers.yaml, spec §6), as a pydantic model.

Unknown keys are kept (the catalog format grows), and the few known misspellings in the wild
(``scope_seprator``) are read as what they meant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..auth_modes import AUTH_MODES, AuthMode
from .interpolation import MissingParamError
from .rendering import render_header, render_url

__all__ = [
    "AUTH_MODES",
    "ProviderTemplate",
    "ProxyConfig",
    "ProxyVerification",
    "interpolation_variables",
]

_VARIABLE = re.compile(r"\$\{(?:connectionConfig\.)?([A-Za-z0-9_.-]+)\}")


def interpolation_variables(text: str) -> set[str]:
    """The ``${connectionConfig.x}`` names a string refers to (``${apiKey}``-style ones included)."""
    return set(_VARIABLE.findall(text))


class ProxyVerification(BaseModel):
    model_config = ConfigDict(extra="allow")
    method: str = "GET"
    endpoint: str
    base_url_override: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class ProxyRetry(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: str | None = None
    after: str | None = None


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    retry: ProxyRetry | None = None
    decompress: bool | None = None
    paginate: dict[str, Any] | None = None
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
    authorization_params: dict[str, str] = Field(default_factory=dict)
    token_params: dict[str, str] = Field(default_factory=dict)
    refresh_params: dict[str, str] = Field(default_factory=dict)
    request_params: dict[str, str] = Field(default_factory=dict)
    scope_separator: str = " "
    default_scopes: list[str] = Field(default_factory=list)
    disable_pkce: bool = False
    authorization_method: Literal["body", "header"] | None = None
    body_format: Literal["form", "json"] = "form"
    token_request_auth_method: Literal["basic"] | None = None
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
    token_headers: dict[str, str] = Field(default_factory=dict)
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
    post_connection: list[dict[str, Any]] = Field(default_factory=list)
    # Provider-specific token handling beyond the standard grant (introspected expiry, long-lived
    # exchanges, custom bodies): the name of a hook in keyway_shared.credentials.token_hooks.
    token_hook: str | None = None
    # Refresh tokens this provider revokes when left unused this many days (Microsoft: 90): the
    # refresher refreshes such connections before then, whether anyone reads them or not.
    refresh_token_idle_days: int | None = None
    proxy: ProxyConfig | None = None
    docs: str | None = None
    categories: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fix_known_typos(cls, data: Any) -> Any:
        if isinstance(data, dict) and "scope_seprator" in data and "scope_separator" not in data:
            data = dict(data)
            data["scope_separator"] = data.pop("scope_seprator")
        return data

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
            names |= {n for n in interpolation_variables(text) if n not in {"apiKey", "accessToken"}}
        return names

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

    def render_header(self, text: str, values: Mapping[str, Any]) -> str:
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

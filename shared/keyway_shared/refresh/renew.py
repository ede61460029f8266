"""Getting new credentials from a provider, by credential type (spec §5.6, §5.8, §5.9).

Pure protocol: no database, no lease. The refresh service decides *whether* and *who*; this module
only knows *how*. Every failure is a :class:`~keyway_shared.credentials.TokenRequestError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ..auth_modes import MODE_FACTS, mode_named
from ..credentials import PermanentTokenError
from ..credentials.app_store import app_store_token
from ..credentials.aws_sts import assume_role, aws_integration, sts_url
from ..credentials.bill import bill_login
from ..credentials.client_credentials import client_credentials_token
from ..credentials.github_app import installation_token
from ..credentials.mcp_auth import own_client_refresh
from ..credentials.oauth2_grant import refresh_oauth2
from ..credentials.shapes import (
    AppCredentials,
    AppStoreCredentials,
    AwsSigV4Credentials,
    BillCredentials,
    ClientCredentials,
    Credentials,
    JwtCredentials,
    OAuth2Credentials,
    SignatureCredentials,
    TwoStepCredentials,
)
from ..credentials.two_step import mint_two_step_token, preconfigured_fields
from ..providers import ProviderTemplate
from ..providers.interpolation import MissingParamError, UnsafeParamError
from ..store import Connection, Integration

__all__ = ["renew"]


def _url(template: ProviderTemplate, template_url: str | None, config: dict[str, Any], what: str) -> str:
    """The URL from the stored configuration, checked as at connect time: a value stored before the
    checks existed, or that should not steer a URL, fails the refresh instead of sending the secret."""
    if not template_url:
        raise PermanentTokenError("missing_token_url", f"The provider template has no {what}.")
    try:
        return template.render_url(template_url, config, stored=True)
    except MissingParamError as exc:
        raise PermanentTokenError("missing_connection_config", f"The {what} needs {', '.join(exc.names)}.") from None
    except UnsafeParamError as exc:
        message = f"The {what} cannot use connectionConfig.{exc.name}: it {exc.reason}."
        raise PermanentTokenError("invalid_connection_config", message) from None


def _scopes(conn: Connection, integration: Integration) -> list[str]:
    override = conn.connection_config.get("oauth_scopes_override") or conn.connection_config.get("oauth_scopes")
    if isinstance(override, list):
        return [str(s) for s in override]
    if isinstance(override, str):
        return [s for s in override.split(",") if s]
    return [s for s in (integration.oauth_scopes or "").split(",") if s]


@dataclass(frozen=True, kw_only=True)
class _Renewal:
    """What every credential type's renewal may need: one refresh of one connection."""

    http: aiohttp.ClientSession
    connection: Connection
    template: ProviderTemplate
    integration: Integration
    now: datetime
    timeout_seconds: float

    @property
    def config(self) -> dict[str, Any]:
        return self.connection.connection_config

    def url(self, template_url: str | None, what: str) -> str:
        return _url(self.template, template_url, self.config, what)


Renewed = tuple[Credentials, datetime | None]


async def _oauth2(r: _Renewal, credentials: OAuth2Credentials) -> Renewed:
    # The template's hook decides what a refresh needs (most: the refresh token; Meta's long-lived
    # tokens: only themselves), in the code the gateway's code exchange shares.
    override = credentials.config_override or {}
    template, integration = r.template, r.integration
    client_id = override.get("client_id") or integration.oauth_client_id
    client_secret = override.get("client_secret") or integration.oauth_client_secret
    facts = MODE_FACTS.get(mode) if (mode := mode_named(r.connection.auth_mode)) is not None else None
    if facts is not None and facts.own_client:
        # Keyway's own client at an MCP server's authorization server (often a public one, no secret).
        template, client_id, client_secret = own_client_refresh(template, integration, r.config)
    elif not client_id or not client_secret:
        raise PermanentTokenError("missing_client_credentials", "The integration has no OAuth client id or secret.")
    renewed, expires_at = await refresh_oauth2(
        r.http,
        template=template,
        refresh_url=_url(template, template.refresh_url or template.token_url_for("OAUTH2"), r.config, "token URL"),
        credentials=credentials,
        client_id=client_id or "",
        client_secret=client_secret or "",
        connection_config=r.config,
        now=r.now,
        timeout_seconds=r.timeout_seconds,
    )
    if override:
        renewed = renewed.with_fields(config_override=override)
    return renewed, expires_at


async def _client_credentials(r: _Renewal, credentials: ClientCredentials) -> Renewed:
    return await client_credentials_token(
        r.http,
        template=r.template,
        token_url=r.url(r.template.token_url_for("OAUTH2_CC"), "token URL"),
        client_id=str(credentials.client_id or r.integration.oauth_client_id or ""),
        client_secret=str(credentials.client_secret or r.integration.oauth_client_secret or ""),
        scopes=_scopes(r.connection, r.integration),
        now=r.now,
        timeout_seconds=r.timeout_seconds,
        connection_config=r.config,
        client_private_key=credentials.dump().get("client_private_key"),  # private_key_jwt (okta-cc)
    )


async def _github_app(r: _Renewal, credentials: AppCredentials) -> Renewed:
    custom = r.integration.custom or {}
    app_id = str(r.config.get("app_id") or custom.get("app_id") or r.integration.oauth_client_id or "")
    return await installation_token(
        r.http,
        token_url=r.url(r.template.token_url_for("APP"), "installation token URL"),
        app_id=app_id,
        private_key=custom.get("private_key") or r.integration.oauth_client_secret or "",
        now=r.now,
        timeout_seconds=r.timeout_seconds,
    )


async def _app_store(r: _Renewal, credentials: AppStoreCredentials) -> Renewed:
    return await app_store_token(
        r.http,
        token_url=r.url(r.template.token_url_for("APP_STORE"), "token URL"),
        private_key=credentials.private_key_pem(),
        private_key_id=str(r.config.get("privateKeyId", "")),
        issuer_id=str(r.config.get("issuerId", "")),
        audience=r.template.authorization_params.get("audience"),
        scope=r.config.get("scope"),
        now=r.now,
        timeout_seconds=r.timeout_seconds,
    )


async def _jwt(r: _Renewal, credentials: JwtCredentials) -> Renewed:
    # Signed again here: nothing to ask the provider.
    return JwtCredentials.signed(r.template, credentials.signing_fields(), r.config, now=r.now)


async def _signature(r: _Renewal, credentials: SignatureCredentials) -> Renewed:
    if r.template.token is None:
        raise PermanentTokenError("invalid_provider_template", "The provider template declares no token lifetime.")
    lifetime = timedelta(milliseconds=r.template.token.expires_in_ms)
    return SignatureCredentials.made(credentials.username, credentials.password, now=r.now, lifetime=lifetime)


async def _aws_sigv4(r: _Renewal, credentials: AwsSigV4Credentials) -> Renewed:
    # The role, external id and region the connection was made with (its configuration first, as
    # Nango reads them), so the new key is for the same role and signs in the same region.
    aws = aws_integration(r.integration.custom or {})
    config = r.config
    external_id = config.get("external_id") or credentials.external_id
    if not external_id:
        raise PermanentTokenError(
            "missing_aws_sigv4_external_id", "The connection has no external id to assume its role with."
        )
    region = config.get("region") or credentials.region or aws.default_region
    return await assume_role(
        r.http,
        integration=aws,
        sts_url=sts_url(r.template, {**config, "region": region}),
        role_arn=str(config.get("role_arn") or credentials.role_arn),
        external_id=str(external_id),
        region=str(region or ""),
        now=r.now,
        timeout_seconds=r.timeout_seconds,
    )


async def _bill(r: _Renewal, credentials: BillCredentials) -> Renewed:
    return await bill_login(
        r.http,
        token_url=r.url(r.template.token_url_for("BILL"), "login URL"),
        username=credentials.username,
        password=credentials.password,
        organization_id=credentials.organization_id,
        dev_key=credentials.dev_key,
        now=r.now,
        timeout_seconds=r.timeout_seconds,
    )


async def _two_step(r: _Renewal, credentials: TwoStepCredentials) -> Renewed:
    # The stored fields mint the next token as they minted the first (or the refresh token does,
    # where the template has a refresh request); the token-response fields stay as stored.
    minted = await mint_two_step_token(
        r.http,
        template=r.template,
        fields=credentials.person_fields(),
        connection_config=r.config,
        now=r.now,
        timeout_seconds=r.timeout_seconds,
        preconfigured=preconfigured_fields(r.template, r.integration.custom),
        refresh_token=credentials.refresh_token,
        stored=True,
    )
    return minted.credentials, minted.expires_at


# One renewal per refreshable credential type; a type not here (API key, Basic, OAuth 1, …) has
# nothing to renew. Each function takes its own type, which the lookup by the credentials' class
# guarantees; the table is typed loosely because a dict cannot tie each key to its value's type.
_RENEWERS: dict[type[Credentials], Callable[[_Renewal, Any], Awaitable[Renewed]]] = {
    OAuth2Credentials: _oauth2,
    ClientCredentials: _client_credentials,
    AppCredentials: _github_app,
    AppStoreCredentials: _app_store,
    JwtCredentials: _jwt,
    SignatureCredentials: _signature,
    AwsSigV4Credentials: _aws_sigv4,
    BillCredentials: _bill,
    TwoStepCredentials: _two_step,
}


async def renew(
    http: aiohttp.ClientSession,
    *,
    connection: Connection,
    template: ProviderTemplate,
    integration: Integration,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> Renewed:
    """New credentials for ``connection``, in the same shape as the ones it has."""
    credentials = connection.credentials
    renewer = next((_RENEWERS[cls] for cls in type(credentials).__mro__ if cls in _RENEWERS), None)
    if renewer is None:
        kind = credentials.dump().get("type")
        raise PermanentTokenError("not_refreshable", f"Credentials of type {kind} are not refreshed.")
    renewal = _Renewal(
        http=http,
        connection=connection,
        template=template,
        integration=integration,
        now=now,
        timeout_seconds=timeout_seconds,
    )
    return await renewer(renewal, credentials)

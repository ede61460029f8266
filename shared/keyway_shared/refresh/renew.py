"""Getting new credentials from a provider, by credential type (spec §5.6, §5.8, §5.9).

Pure protocol: no database, no lease. The refresh service decides *whether* and *who*; this module
only knows *how*. Every failure is a :class:`~keyway_shared.credentials.TokenRequestError`.
"""

from __future__ import annotations

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


async def _oauth2(
    http: aiohttp.ClientSession,
    conn: Connection,
    credentials: OAuth2Credentials,
    template: ProviderTemplate,
    integration: Integration,
    now: datetime,
    timeout_seconds: float,
) -> tuple[Credentials, datetime | None]:
    # The template's hook decides what a refresh needs (most: the refresh token; Meta's long-lived
    # tokens: only themselves), in the code the gateway's code exchange shares.
    override = credentials.config_override or {}
    client_id = override.get("client_id") or integration.oauth_client_id
    client_secret = override.get("client_secret") or integration.oauth_client_secret
    facts = MODE_FACTS.get(mode) if (mode := mode_named(conn.auth_mode)) is not None else None
    if facts is not None and facts.own_client:
        # Keyway's own client at an MCP server's authorization server (often a public one, no secret).
        template, client_id, client_secret = own_client_refresh(template, integration, conn.connection_config)
    elif not client_id or not client_secret:
        raise PermanentTokenError("missing_client_credentials", "The integration has no OAuth client id or secret.")
    renewed, expires_at = await refresh_oauth2(
        http,
        template=template,
        refresh_url=_url(
            template, template.refresh_url or template.token_url_for("OAUTH2"), conn.connection_config, "token URL"
        ),
        credentials=credentials,
        client_id=client_id or "",
        client_secret=client_secret or "",
        connection_config=conn.connection_config,
        now=now,
        timeout_seconds=timeout_seconds,
    )
    if override:
        renewed = renewed.with_fields(config_override=override)
    return renewed, expires_at


async def _aws_sigv4(
    http: aiohttp.ClientSession,
    conn: Connection,
    credentials: AwsSigV4Credentials,
    template: ProviderTemplate,
    integration: Integration,
    now: datetime,
    timeout_seconds: float,
) -> tuple[Credentials, datetime | None]:
    # The role, external id and region the connection was made with (its configuration first, as
    # Nango reads them), so the new key is for the same role and signs in the same region.
    aws = aws_integration(integration.custom or {})
    config = conn.connection_config
    external_id = config.get("external_id") or credentials.external_id
    if not external_id:
        raise PermanentTokenError(
            "missing_aws_sigv4_external_id", "The connection has no external id to assume its role with."
        )
    region = config.get("region") or credentials.region or aws.default_region
    return await assume_role(
        http,
        integration=aws,
        sts_url=sts_url(template, {**config, "region": region}),
        role_arn=str(config.get("role_arn") or credentials.role_arn),
        external_id=str(external_id),
        region=str(region or ""),
        now=now,
        timeout_seconds=timeout_seconds,
    )


async def renew(
    http: aiohttp.ClientSession,
    *,
    connection: Connection,
    template: ProviderTemplate,
    integration: Integration,
    now: datetime,
    timeout_seconds: float = 15.0,
) -> tuple[Credentials, datetime | None]:
    """New credentials for ``connection``, in the same shape as the ones it has."""
    credentials = connection.credentials
    config = connection.connection_config
    if isinstance(credentials, OAuth2Credentials):
        return await _oauth2(http, connection, credentials, template, integration, now, timeout_seconds)
    if isinstance(credentials, ClientCredentials):
        return await client_credentials_token(
            http,
            template=template,
            token_url=_url(template, template.token_url_for("OAUTH2_CC"), config, "token URL"),
            client_id=str(credentials.client_id or integration.oauth_client_id or ""),
            client_secret=str(credentials.client_secret or integration.oauth_client_secret or ""),
            scopes=_scopes(connection, integration),
            now=now,
            timeout_seconds=timeout_seconds,
            connection_config=config,
            client_private_key=credentials.dump().get("client_private_key"),  # private_key_jwt (okta-cc)
        )
    if isinstance(credentials, AppCredentials):
        custom = integration.custom or {}
        app_id = str(config.get("app_id") or custom.get("app_id") or integration.oauth_client_id or "")
        private_key = custom.get("private_key") or integration.oauth_client_secret or ""
        return await installation_token(
            http,
            token_url=_url(template, template.token_url_for("APP"), config, "installation token URL"),
            app_id=app_id,
            private_key=private_key,
            now=now,
            timeout_seconds=timeout_seconds,
        )
    if isinstance(credentials, AppStoreCredentials):
        return await app_store_token(
            http,
            token_url=_url(template, template.token_url_for("APP_STORE"), config, "token URL"),
            private_key=credentials.private_key_pem(),
            private_key_id=str(config.get("privateKeyId", "")),
            issuer_id=str(config.get("issuerId", "")),
            audience=template.authorization_params.get("audience"),
            scope=config.get("scope"),
            now=now,
            timeout_seconds=timeout_seconds,
        )
    if isinstance(credentials, JwtCredentials):  # signed again here: nothing to ask the provider
        return JwtCredentials.signed(template, credentials.signing_fields(), config, now=now)
    if isinstance(credentials, SignatureCredentials):
        if template.token is None:
            raise PermanentTokenError("invalid_provider_template", "The provider template declares no token lifetime.")
        lifetime = timedelta(milliseconds=template.token.expires_in_ms)
        return SignatureCredentials.made(credentials.username, credentials.password, now=now, lifetime=lifetime)
    if isinstance(credentials, AwsSigV4Credentials):
        return await _aws_sigv4(http, connection, credentials, template, integration, now, timeout_seconds)
    if isinstance(credentials, BillCredentials):
        return await bill_login(
            http,
            token_url=_url(template, template.token_url_for("BILL"), config, "login URL"),
            username=credentials.username,
            password=credentials.password,
            organization_id=credentials.organization_id,
            dev_key=credentials.dev_key,
            now=now,
            timeout_seconds=timeout_seconds,
        )
    if isinstance(credentials, TwoStepCredentials):
        # The stored fields mint the next token as they minted the first (or the refresh token does,
        # where the template has a refresh request); the token-response fields stay as stored.
        minted = await mint_two_step_token(
            http,
            template=template,
            fields=credentials.person_fields(),
            connection_config=config,
            now=now,
            timeout_seconds=timeout_seconds,
            preconfigured=preconfigured_fields(template, integration.custom),
            refresh_token=credentials.refresh_token,
            stored=True,
        )
        return minted.credentials, minted.expires_at
    kind = credentials.dump().get("type")
    raise PermanentTokenError("not_refreshable", f"Credentials of type {kind} are not refreshed.")

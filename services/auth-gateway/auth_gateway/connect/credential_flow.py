"""What the JSON connect endpoints without a popup share (spec §2.5): public key, ids, HMAC, the
integration in the expected auth mode, and one ``auth.failed`` for any failure once the environment is known.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from keyway_shared.credentials import Credentials, PermanentTokenError, TokenRequestError
from keyway_shared.events import AuthMode
from keyway_shared.providers import ProviderTemplate
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError
from keyway_shared.store import Environment, Integration

from ..http.errors import ApiError
from ..operations.connections import record_auth_failure, store_connection
from ..resources import CATALOG, STORES
from .frontend_request import FrontendRequest

__all__ = [
    "CredentialAttempt",
    "announce_failures",
    "check_connection_config",
    "connected",
    "integration_in_mode",
    "token_api_error",
    "token_url",
]


@dataclass(kw_only=True)
class CredentialAttempt:
    env: Environment
    front: FrontendRequest
    mode: AuthMode
    provider: str | None = None  # known once the integration is found


async def integration_in_mode(request: web.Request, attempt: CredentialAttempt) -> tuple[Integration, ProviderTemplate]:
    env, front, mode = attempt.env, attempt.front, attempt.mode
    integration = await request.app[STORES].integrations.get(env.name, front.provider_config_key)
    if integration is None:
        raise ApiError(
            "unknown_provider_config",
            f"There is no integration '{front.provider_config_key}' in the environment '{env.name}'.",
        )
    attempt.provider = integration.provider
    template = request.app[CATALOG].get(integration.provider)
    if template is None:
        raise ApiError("unknown_provider_template", f"The provider '{integration.provider}' is not in the catalog.")
    if template.auth_mode != mode:
        raise ApiError(
            "invalid_auth_mode",
            f"The integration '{front.provider_config_key}' uses {template.auth_mode}, not {mode}.",
        )
    return integration, template


def token_url(template: ProviderTemplate, mode: str, connection_config: dict[str, str]) -> str:
    url = template.token_url_for(mode)
    if not url:
        raise ApiError("invalid_provider_template", "The provider template has no token URL.")
    check_connection_config(template, connection_config)
    try:
        return template.render_url(url, connection_config)
    except MissingParamError as exc:
        names = ", ".join(f"params[{n}]" for n in exc.names)
        raise ApiError("url_param_err", f"The token URL needs {names}, which the request did not give.") from None
    except UnsafeParamError as exc:
        raise _unsafe_param(exc) from None


def check_connection_config(template: ProviderTemplate, connection_config: dict[str, Any]) -> None:
    """``invalid_connection_config`` for a browser's value that some URL or header of the template
    could not take (``ProviderTemplate.check_connection_config``), before anything is sent."""
    try:
        template.check_connection_config(connection_config)
    except UnsafeParamError as exc:
        raise _unsafe_param(exc) from None


def _unsafe_param(exc: UnsafeParamError) -> ApiError:
    message = f"The provider's URLs and headers cannot use params[{exc.name}]: it {exc.reason}."
    return ApiError("invalid_connection_config", message)


def token_api_error(exc: TokenRequestError) -> ApiError:
    """A provider's refusal is the caller's problem (400); the provider being down is not (502)."""
    return ApiError(exc.type, exc.description, status=400 if isinstance(exc, PermanentTokenError) else 502)


@asynccontextmanager
async def announce_failures(request: web.Request, attempt: CredentialAttempt) -> AsyncIterator[None]:
    """Any ApiError (or token failure) inside becomes ``auth.failed``, then the envelope."""
    try:
        try:
            yield
        except TokenRequestError as exc:
            raise token_api_error(exc) from None
    except ApiError as err:
        await record_auth_failure(
            request.app,
            environment=attempt.env.name,
            error_type=err.code,
            description=err.message or err.code,
            provider_config_key=attempt.front.provider_config_key,
            provider=attempt.provider,
            connection_id=attempt.front.connection_id or None,
            auth_mode=attempt.mode,
            operation_id=attempt.front.operation_id,
        )
        raise


async def connected(
    request: web.Request,
    env: Environment,
    front: FrontendRequest,
    *,
    provider: str,
    auth_mode: AuthMode,
    credentials: Credentials,
    connection_config: dict[str, Any],
    expires_at: datetime | None = None,
) -> web.Response:
    """A form flow's last step: fill what the template's post-connection program asks of the
    provider, store the connection the request names (spending its connect session), and answer
    as the frontend SDK expects."""
    await store_connection(
        request.app,
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=provider,
        auth_mode=auth_mode,
        connection_id=front.connection_id,
        credentials=credentials,
        connection_config=connection_config,
        expires_at=expires_at,
        operation_id=front.operation_id,
        connect_session_id=front.connect_session_id,
    )
    return web.json_response({"providerConfigKey": front.provider_config_key, "connectionId": front.connection_id})

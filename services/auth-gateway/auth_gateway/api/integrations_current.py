"""``/integrations``: the integrations in Nango's current shape, over the operations ``/config`` uses.

Beside the 2024 routes (``config.py``: ``{"configs": …}``, ``{"config": …}``), these answer as
``@nangohq/node`` 0.71's ``listIntegrations``, ``getIntegration``, ``createIntegration``,
``updateIntegration`` and ``deleteIntegration`` expect: ``{"data": integration}`` (a list for the
list), ``{"success": true}`` for a deletion, and Nango's current error envelope. Both generations read
and write the same stored integration (``operations/integrations.py``).

An integration is its key, provider, display name (its own, else its provider's), Nango's
``forward_webhooks`` flag and its times; ``?include=credentials`` adds its app as Nango shapes it for
its provider's auth mode (null for a mode whose integration holds none), ``?include=webhook`` the URL
its provider's webhooks are received at: always null here, as Nango answers for a provider it routes no
webhooks for, since Keyway receives none yet. Nango also sends a ``logo`` on its own server; Keyway hosts
no logos, so it sends none rather than a link that leads nowhere (as ``GET /providers``).

``GET /integrations`` also answers a connect session's token (Nango's Connect UI lists what the end
user may connect): then only the integrations the session allows, when it names them, as Nango filters.

Refusals are Nango's: an unknown query parameter (every route but ``GET`` one takes none) is
``invalid_query_params``, a bad key in the path ``invalid_uri_params``, a bad body ``invalid_body`` with
zod's issues, a missing integration 404 ``not_found``; what the service refuses after validation is
``invalid_body`` with Nango's message (an unknown provider, a key in use, credentials of another auth
mode, missing credentials).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.providers.template import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..http.errors import ApiError
from ..http.query_issues import Issue, check_string, invalid_params, unrecognized_keys
from ..http.requests import json_object
from ..http.serialize import js_iso
from ..operations import integrations as operation
from ..operations.callers import secret_key, secret_key_or_connect_session
from ..operations.connect_sessions import ConnectSession
from ..operations.integrations import IntegrationBody, IntegrationChange
from ..resources import CATALOG, STORES
from .integration_config import integration_config_values
from .integrations_current_body import KEY, MAX_LENGTH, create_issues, kept_fields, patch_issues

__all__ = [
    "INCLUDES",
    "INTEGRATION_ANSWER",
    "INTEGRATION_LIST_ANSWER",
    "create_integration",
    "delete_integration",
    "get_integration",
    "list_integrations",
    "update_integration",
]

INCLUDES = ("webhook", "credentials")


@secret_key_or_connect_session
async def list_integrations(request: web.Request, env: Environment, session: ConnectSession | None) -> web.Response:
    _no_query(request)
    catalog = request.app[CATALOG]
    integrations = await request.app[STORES].integrations.list(env.name)
    allowed = session.allowed_integrations if session else None
    if allowed is not None:
        integrations = [i for i in integrations if i.unique_key in allowed]
    return web.json_response({"data": [_public(i, catalog.get(i.provider)) for i in integrations]})


@secret_key
async def get_integration(request: web.Request, env: Environment) -> web.Response:
    include = _includes(request)
    key = _path_key(request)
    integration = await request.app[STORES].integrations.get(env.name, key)
    if integration is None:
        raise _missing(key)
    template = request.app[CATALOG].get(integration.provider)
    extra: dict[str, Any] = {}
    if "webhook" in include:
        extra["webhook_url"] = None
    if "credentials" in include:
        extra["credentials"] = _credentials(integration, template)
    return web.json_response({"data": _public(integration, template, extra)})


@secret_key
async def create_integration(request: web.Request, env: Environment) -> web.Response:
    _no_query(request)
    body = await json_object(request)
    if issues := create_issues(body):
        raise invalid_params(issues, code="invalid_body")
    template = request.app[CATALOG].get(body["provider"])
    if template is None:
        raise _service_issue("Invalid provider", "provider")
    credentials = body.get("credentials")
    if credentials is not None and credentials["type"] != template.auth_mode:
        raise _incompatible()
    # Nango asks for credentials when creating an integration of some modes (its integration.service.ts);
    # the others either hold none or, in Keyway, are checked by the operation.
    if credentials is None and MODE_FACTS[template.auth_mode].credentials_required:
        raise ApiError("invalid_body", "Missing credentials")
    preset = integration_config_values(template, body)
    kept = kept_fields(credentials) if credentials is not None else {"custom": {}}
    config = IntegrationBody(
        provider=body["provider"],
        provider_config_key=body["unique_key"],
        **{name: value for name, value in kept.items() if name != "custom"},
        custom={**kept["custom"], **preset, **body.get("custom", {})} or None,
    )
    try:
        created = await operation.create_integration(
            request.app,
            env,
            config,
            display_name=body.get("display_name"),
            forward_webhooks=body.get("forward_webhooks", True),
        )
    except ApiError as refused:
        raise _as_current(refused) from None
    return web.json_response({"data": _public(created, template)})


@secret_key
async def update_integration(request: web.Request, env: Environment) -> web.Response:
    _no_query(request)
    body = await json_object(request)
    if issues := patch_issues(body):
        raise invalid_params(issues, code="invalid_body")
    key = _path_key(request)
    existing = await request.app[STORES].integrations.get(env.name, key)
    if existing is None:
        raise _missing(key)
    template = request.app[CATALOG].get(existing.provider)
    credentials = body.get("credentials")
    if credentials is not None and (template is None or credentials["type"] != template.auth_mode):
        raise _incompatible()
    preset = integration_config_values(template, body, patch=True)
    kept = kept_fields(credentials, patch=True) if credentials is not None else {"custom": {}}
    change = IntegrationChange(
        unique_key=body.get("unique_key"),
        display_name=body.get("display_name"),
        forward_webhooks=body.get("forward_webhooks"),
        **{name: value for name, value in kept.items() if name != "custom"},
        custom={**body.get("custom", {}), **preset, **kept["custom"]},
    )
    changed = await operation.change_integration(request.app, env, key, change)
    return web.json_response({"data": _public(changed, template)})


@secret_key
async def delete_integration(request: web.Request, env: Environment) -> web.Response:
    _no_query(request)
    key = _path_key(request)
    if not await operation.delete_integration(request.app, env, key):
        raise ApiError("not_found", "Integration does not exist", status=404)
    return web.json_response({"success": True})


def _public(integration: Integration, template: ProviderTemplate | None, extra: dict[str, Any] | None = None) -> Any:
    """The integration as Nango's current API shows it (``ApiPublicIntegration``)."""
    display_name = integration.display_name or (template.display_name if template else None) or integration.provider
    return {
        "unique_key": integration.unique_key,
        "provider": integration.provider,
        "display_name": display_name,
        **(extra or {}),
        "forward_webhooks": integration.forward_webhooks,
        "created_at": js_iso(integration.created_at),
        "updated_at": js_iso(integration.updated_at),
    }


def _credentials(integration: Integration, template: ProviderTemplate | None) -> dict[str, Any] | None:
    """The integration's app, shaped for its provider's auth mode as Nango shapes it; None for the others."""
    if template is None:
        return None
    mode = template.auth_mode
    shape = MODE_FACTS[mode].integration_credentials
    custom = integration.custom
    if shape == "oauth_client":
        return {
            "type": mode,
            "client_id": integration.oauth_client_id,
            "client_secret": integration.oauth_client_secret,
            "scopes": integration.oauth_scopes or None,
            "webhook_secret": custom.get("webhookSecret") or None,
        }
    if shape == "app":
        return {
            "type": mode,
            "app_id": integration.oauth_client_id,
            "private_key": integration.oauth_client_secret,
            "app_link": integration.app_link or None,
        }
    if shape == "custom":
        return {
            "type": mode,
            "client_id": integration.oauth_client_id,
            "client_secret": integration.oauth_client_secret,
            "app_id": custom.get("app_id") or None,
            "app_link": integration.app_link or None,
            "private_key": custom.get("private_key") or None,
        }
    return None


def _no_query(request: web.Request) -> None:
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)


def _includes(request: web.Request) -> set[str]:
    """``include``: ``webhook`` and/or ``credentials``, once or repeated (or qs's ``include[]=``, ``include[0]=``)."""
    given = [(name, value) for name, value in request.query.items() if name == "include" or name.startswith("include[")]
    issues: list[Issue] = []
    if any(not _include_key(name) or value not in INCLUDES for name, value in given):
        issues.append({"code": "invalid_union", "message": "Invalid input", "path": ["include"]})
    issues += unrecognized_keys(request.query, {name for name, _ in given})  # zod lists them after the known ones
    if issues:
        raise invalid_params(issues)
    return {value for _, value in given}


def _include_key(name: str) -> bool:
    """``include``, ``include[]`` or ``include[<index>]``: what qs turns into the list (``include[x]`` is an object)."""
    inner = name.removeprefix("include")
    return inner in ("", "[]") or (inner.startswith("[") and inner.endswith("]") and inner[1:-1].isdigit())


def _path_key(request: web.Request) -> str:
    key = request.match_info["uniqueKey"]
    if issues := check_string(key, ["uniqueKey"], pattern=KEY, max_length=MAX_LENGTH):
        raise invalid_params(issues, code="invalid_uri_params")
    return key


def _missing(key: str) -> ApiError:
    return ApiError("not_found", f'Integration "{key}" does not exist', status=404)


def _incompatible() -> ApiError:
    return ApiError("invalid_body", "incompatible credentials auth type and provider auth")


def _service_issue(message: str, field: str) -> ApiError:
    """A refusal Nango's service words as one zod-like issue (its code is zod 3's, as Nango writes it)."""
    return invalid_params([{"code": "invalid_string", "message": message, "path": [field]}], code="invalid_body")


def _as_current(refused: ApiError) -> ApiError:
    """An operation's refusal of a creation, in the words Nango's current API uses for it."""
    if refused.code == "duplicate_provider_config":
        return _service_issue("Unique key already exists", "uniqueKey")
    if refused.code in ("missing_client_id", "missing_client_secret"):
        return ApiError("invalid_body", "Missing credentials")
    if refused.status >= 500:
        return refused
    return ApiError("invalid_body", refused.message, status=400)


_INTEGRATION: dict[str, Any] = {
    "type": "object",
    "description": "An integration (Nango's ApiPublicIntegration; Keyway sends no logo)",
    "required": ["unique_key", "provider", "display_name", "forward_webhooks", "created_at", "updated_at"],
    "properties": {
        "unique_key": {"type": "string"},
        "provider": {"type": "string"},
        "display_name": {"type": "string", "description": "Its own, else its provider's"},
        "forward_webhooks": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "webhook_url": {"type": ["string", "null"], "description": "?include=webhook: always null in Keyway"},
        "credentials": {
            "type": ["object", "null"],
            "description": "?include=credentials: the app, shaped by the provider's auth mode (null if it holds none)",
        },
    },
}
INTEGRATION_ANSWER: dict[str, Any] = {"type": "object", "required": ["data"], "properties": {"data": _INTEGRATION}}
INTEGRATION_LIST_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "array", "items": _INTEGRATION}},
}

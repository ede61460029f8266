"""``POST /integrations/quickstart``: Nango's integration on its own shared developer app, which Keyway has not.

In Nango (its server's controllers/integrations/postIntegration.ts and services/integration.service.ts)
the route creates an integration of an OAUTH1, OAUTH2 or APP provider without credentials: the
integration borrows the developer app Nango registered with the provider and shares between its
customers. A self-hosted Keyway has no such app to lend, so the route never creates anything; it
checks the request as Nango does and answers what Nango answers for a provider it has no shared app
for (400 ``invalid_body``, "No Nango-provided developer app is configured for this provider"), which
is true of every provider here. The caller's way forward is ``POST /integrations`` with its own app.

Nango's refusals before that one keep their order: an unknown query parameter, a body its strict
schema refuses (credentials among the unknown fields), an unknown provider, a provider whose auth
mode takes no developer app, a key already in use.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.store import Environment

from ..http.body_issues import MISSING, check_boolean, check_string, matches, max_length, min_length, unknown_fields
from ..http.errors import ApiError
from ..http.query_issues import Issue, invalid_params, unrecognized_keys
from ..http.requests import json_object
from ..operations.callers import secret_key
from ..resources import CATALOG, STORES
from .integrations_current_body import KEY, MAX_LENGTH, PROVIDER

__all__ = ["NO_SHARED_APP", "QUICKSTART_BODY", "create_quickstart_integration"]

_FIELDS = ("provider", "unique_key", "display_name", "forward_webhooks")
NO_SHARED_APP = "No Nango-provided developer app is configured for this provider"


@secret_key
async def create_quickstart_integration(request: web.Request, env: Environment) -> web.Response:
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)
    body = await json_object(request)
    if issues := _body_issues(body):
        raise invalid_params(issues, code="invalid_body")
    template = request.app[CATALOG].get(body["provider"])
    if template is None:
        raise _field_issue("Invalid provider", "provider")
    if not MODE_FACTS[template.auth_mode].quickstart:  # no app to lend for its auth mode
        raise ApiError("invalid_body", "Quickstart is only available for providers that require a developer app")
    if await request.app[STORES].integrations.get(env.name, body["unique_key"]) is not None:
        raise _field_issue("Unique key already exists", "uniqueKey")
    raise ApiError("invalid_body", NO_SHARED_APP)


def _body_issues(body: dict[str, Any]) -> list[Issue]:
    """Nango's strict schema: provider and unique_key required, a display name and the webhook flag optional."""
    issues = check_string(body.get("provider", MISSING), ["provider"], matches(PROVIDER), max_length(MAX_LENGTH))
    issues += check_string(body.get("unique_key", MISSING), ["unique_key"], matches(KEY), max_length(MAX_LENGTH))
    display_name = body.get("display_name", MISSING)
    issues += check_string(display_name, ["display_name"], min_length(1), max_length(MAX_LENGTH), optional=True)
    issues += check_boolean(body.get("forward_webhooks", MISSING), ["forward_webhooks"], optional=True)
    return issues + unknown_fields(body, _FIELDS)


def _field_issue(message: str, field: str) -> ApiError:
    """A refusal Nango's service words as one zod-like issue (its code is zod 3's, as Nango writes it)."""
    return invalid_params([{"code": "invalid_string", "message": message, "path": [field]}], code="invalid_body")


QUICKSTART_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["provider", "unique_key"],
    "properties": {
        "provider": {"type": "string", "pattern": f"^{PROVIDER.pattern}$", "maxLength": MAX_LENGTH},
        "unique_key": {"type": "string", "pattern": f"^{KEY.pattern}$", "maxLength": MAX_LENGTH},
        "display_name": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
        "forward_webhooks": {"type": "boolean"},
    },
}

"""What ``POST /integrations`` and ``PATCH /integrations/{uniqueKey}`` accept, checked as Nango checks it,
and where each accepted field is kept in Keyway's integration.

Nango's zod schemas (its server's controllers/integrations/postIntegration.ts and
uniqueKey/patchIntegration.ts, with helpers/validation.ts) are strict: an unknown field is refused.
``credentials`` is one of three shapes chosen by its ``type`` (OAUTH1/OAUTH2/TBA: a client; APP: a
GitHub App; CUSTOM: both; each mode's ``integration_credentials`` fact), each strict too. The issues
are zod 4's (``http/body_issues.py``).

Keyway keeps the credentials where the 2024 ``/config`` puts them, so that both generations and the
dashboard read one integration: the client (or an APP's app id and private key) in ``oauth_client_id``
and ``oauth_client_secret``, a CUSTOM integration's app in ``custom.app_id``/``custom.private_key``,
and an OAuth webhook secret in ``custom.webhookSecret``, where Nango keeps it. A private key is kept as
it is sent (PEM), as ``/config`` keeps it.
"""

from __future__ import annotations

import re
from typing import Any

from keyway_shared.auth_modes import AUTH_MODES, MODE_FACTS, IntegrationCredentials, mode_named

from ..http.body_issues import (
    MISSING,
    StringCheck,
    check_boolean,
    check_string,
    check_string_record,
    ends_with,
    invalid_type,
    matches,
    max_length,
    min_length,
    starts_with,
    unknown_fields,
)
from ..http.query_issues import Issue

__all__ = [
    "CREATE_BODY",
    "KEY",
    "MAX_LENGTH",
    "PATCH_BODY",
    "PROVIDER",
    "create_issues",
    "integration_credentials",
    "kept_fields",
    "patch_issues",
]

# helpers/validation.ts: an integration's key (it allows a few more characters "for legacy reason"),
# a provider's name, the scopes as a comma-separated list without spaces.
KEY = re.compile(r"[a-zA-Z0-9~:.@ _-]+")
PROVIDER = re.compile(r"[a-zA-Z0-9_-]+")
SCOPES = re.compile(r"[0-9a-zA-Z:/_.*-]+(,[0-9a-zA-Z:/_.*-]+)*")
MAX_LENGTH = 255
CONFIG_VALUE_MAX = 8192
RSA_BEGIN, RSA_END = "-----BEGIN RSA PRIVATE KEY----", "-----END RSA PRIVATE KEY-----"
CREDENTIALS_MESSAGE = "invalid credentials object"  # the union's own message, for a shape it cannot choose

_CLIENT_ID: tuple[StringCheck, ...] = (min_length(1), max_length(MAX_LENGTH))
_PRIVATE_KEY: tuple[StringCheck, ...] = (starts_with(RSA_BEGIN), ends_with(RSA_END))
_NON_EMPTY: tuple[StringCheck, ...] = (min_length(1),)
# Each shape's fields in the schema's order: (name, required, checks).
_Field = tuple[str, bool, tuple[StringCheck, ...]]
_CLIENT_SHAPE: tuple[_Field, ...] = (
    ("client_id", True, _CLIENT_ID),
    ("client_secret", True, _NON_EMPTY),
    ("scopes", False, ()),  # a union: checked on its own below
    ("webhook_secret", False, (max_length(MAX_LENGTH),)),
)
_APP_SHAPE: tuple[_Field, ...] = (
    ("app_id", True, _CLIENT_ID),
    ("app_link", True, _NON_EMPTY),
    ("private_key", True, _PRIVATE_KEY),
)
_CUSTOM_SHAPE: tuple[_Field, ...] = (
    ("client_id", True, _CLIENT_ID),
    ("client_secret", True, _NON_EMPTY),
    ("app_id", True, _CLIENT_ID),
    ("app_link", True, _NON_EMPTY),
    ("private_key", True, _PRIVATE_KEY),
)
_SHAPES: dict[IntegrationCredentials, tuple[_Field, ...]] = {
    "oauth_client": _CLIENT_SHAPE,
    "app": _APP_SHAPE,
    "custom": _CUSTOM_SHAPE,
}


def integration_credentials(kind: object) -> IntegrationCredentials | None:
    """The shape of the integration credentials whose ``type`` is ``kind`` (an auth mode's, by its facts)."""
    mode = mode_named(kind)
    return MODE_FACTS[mode].integration_credentials if mode is not None else None


def create_issues(body: dict[str, Any]) -> list[Issue]:
    """``POST /integrations``: provider and unique_key required, the rest optional."""
    issues = check_string(body.get("provider", MISSING), ["provider"], matches(PROVIDER), max_length(MAX_LENGTH))
    issues += check_string(body.get("unique_key", MISSING), ["unique_key"], matches(KEY), max_length(MAX_LENGTH))
    issues += _common_issues(body)
    return issues + unknown_fields(body, _CREATE_FIELDS)


def patch_issues(body: dict[str, Any]) -> list[Issue]:
    """``PATCH /integrations/{uniqueKey}``: every field optional."""
    key = body.get("unique_key", MISSING)
    issues = check_string(key, ["unique_key"], matches(KEY), max_length(MAX_LENGTH), optional=True)
    issues += _common_issues(body)
    return issues + unknown_fields(body, _PATCH_FIELDS)


_CREATE_FIELDS = (
    "provider",
    "unique_key",
    "display_name",
    "forward_webhooks",
    "credentials",
    "integration_config",
    "custom",
)
_PATCH_FIELDS = ("unique_key", "display_name", "credentials", "forward_webhooks", "integration_config", "custom")


def _common_issues(body: dict[str, Any]) -> list[Issue]:
    """display_name, forward_webhooks, credentials, integration_config and custom, as both schemas declare them."""
    display_name = body.get("display_name", MISSING)
    issues = check_string(display_name, ["display_name"], min_length(1), max_length(MAX_LENGTH), optional=True)
    issues += check_boolean(body.get("forward_webhooks", MISSING), ["forward_webhooks"], optional=True)
    if "credentials" in body:
        issues += credentials_issues(body["credentials"])
    config = body.get("integration_config", MISSING)
    issues += check_string_record(config, ["integration_config"], max_length(CONFIG_VALUE_MAX), optional=True)
    issues += check_string_record(body.get("custom", MISSING), ["custom"], optional=True)
    return issues


def credentials_issues(credentials: Any) -> list[Issue]:
    path = ["credentials"]
    if not isinstance(credentials, dict):
        return [invalid_type("object", credentials, path, CREDENTIALS_MESSAGE)]
    shape_name = integration_credentials(credentials.get("type"))
    if shape_name is None:
        return [{"code": "invalid_union", "message": CREDENTIALS_MESSAGE, "path": [*path, "type"]}]
    shape = _SHAPES[shape_name]
    issues: list[Issue] = []
    for name, required, checks in shape:
        value = credentials.get(name, MISSING)
        if name == "scopes":
            issues += _scopes_issues(value, [*path, name])
        else:
            issues += check_string(value, [*path, name], *checks, optional=not required)
    return issues + unknown_fields(credentials, ("type", *(name for name, _, _ in shape)), path)


def _scopes_issues(value: Any, path: list[str]) -> list[Issue]:
    """A comma-separated list without spaces, or the empty string (a union: one issue if neither)."""
    if value is MISSING or (isinstance(value, str) and (value == "" or SCOPES.fullmatch(value))):
        return []
    return [{"code": "invalid_union", "message": "Invalid input", "path": path}]


def kept_fields(credentials: dict[str, Any], *, patch: bool = False) -> dict[str, Any]:
    """Where Keyway keeps valid ``credentials``: the fields of its integration, ``custom`` merged key by key.

    In ``custom``, None removes a key: a PATCH of OAUTH2 credentials (``webhook_secret_clears``) whose
    ``webhook_secret`` is empty drops the secret, as Nango's does (a POST has nothing to drop).
    """
    mode = mode_named(credentials["type"])
    if mode is None:
        raise ValueError("kept_fields takes credentials that credentials_issues found valid")
    facts = MODE_FACTS[mode]
    if facts.integration_credentials == "oauth_client":
        custom: dict[str, str | None] = {}
        if secret := credentials.get("webhook_secret"):
            custom["webhookSecret"] = secret
        elif patch and facts.webhook_secret_clears and "webhook_secret" in credentials:
            custom["webhookSecret"] = None
        return {
            "oauth_client_id": credentials["client_id"],
            "oauth_client_secret": credentials["client_secret"],
            "oauth_scopes": credentials.get("scopes"),
            "custom": custom,
        }
    if facts.integration_credentials == "app":
        return {
            "oauth_client_id": credentials["app_id"],
            "oauth_client_secret": credentials["private_key"],
            "app_link": credentials["app_link"],
            "custom": {},
        }
    return {  # "custom": the OAuth client, and the GitHub App beside it
        "oauth_client_id": credentials["client_id"],
        "oauth_client_secret": credentials["client_secret"],
        "app_link": credentials["app_link"],
        "custom": {"app_id": credentials["app_id"], "private_key": credentials["private_key"]},
    }


def _type_schema(shape_name: IntegrationCredentials) -> dict[str, Any]:
    """The ``type`` of one shape: the modes whose integration takes it, in the published order."""
    modes = [mode for mode in AUTH_MODES if MODE_FACTS[mode].integration_credentials == shape_name]
    return {"const": modes[0]} if len(modes) == 1 else {"enum": modes}


_STRING = {"type": "string"}
_KEY_SCHEMA = {"type": "string", "pattern": f"^{KEY.pattern}$", "maxLength": MAX_LENGTH}
_CREDENTIALS_SCHEMA: dict[str, Any] = {
    "description": "The integration's own app, of its provider's auth mode",
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "client_id", "client_secret"],
            "properties": {
                "type": _type_schema("oauth_client"),
                "client_id": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
                "client_secret": {"type": "string", "minLength": 1},
                "scopes": {"type": "string", "description": "Comma-separated, no spaces"},
                "webhook_secret": {"type": "string", "maxLength": MAX_LENGTH},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "app_id", "app_link", "private_key"],
            "properties": {
                "type": _type_schema("app"),
                "app_id": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
                "app_link": {"type": "string", "minLength": 1},
                "private_key": {"type": "string", "description": "PEM, PKCS#1 (BEGIN RSA PRIVATE KEY)"},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "client_id", "client_secret", "app_id", "app_link", "private_key"],
            "properties": {
                "type": _type_schema("custom"),
                "client_id": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
                "client_secret": {"type": "string", "minLength": 1},
                "app_id": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
                "app_link": {"type": "string", "minLength": 1},
                "private_key": {"type": "string", "description": "PEM, PKCS#1 (BEGIN RSA PRIVATE KEY)"},
            },
        },
    ],
}
_OPTIONAL_FIELDS: dict[str, Any] = {
    "display_name": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH},
    "forward_webhooks": {"type": "boolean"},
    "credentials": _CREDENTIALS_SCHEMA,
    "integration_config": {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": CONFIG_VALUE_MAX},
        "description": (
            "The settings the provider's integration_config declares (aws-sigv4: service, region, STS), "
            "kept in custom; refused for a provider that declares none"
        ),
    },
    "custom": {"type": "object", "additionalProperties": _STRING},
}
CREATE_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["provider", "unique_key"],
    "properties": {
        "provider": {"type": "string", "pattern": f"^{PROVIDER.pattern}$", "maxLength": MAX_LENGTH},
        "unique_key": _KEY_SCHEMA,
        **_OPTIONAL_FIELDS,
    },
}
PATCH_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"unique_key": {**_KEY_SCHEMA, "description": "A new key (refused while it has connections)"}}
    | _OPTIONAL_FIELDS,
}

"""JSON schemas the route table names for bodies that views read themselves (no pydantic model to
derive them from), and for the answers cheap to describe.

Each says what its view accepts, no more and no less: a contract fuzzer sends what a schema allows
and expects it accepted, and sends what it forbids and expects it refused. Where a view is lenient
(a value it ignores unless it is ``"true"``), the schema is a plain string too.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "API_KEY",
    "APP_STORE",
    "BASIC",
    "CLIENT_CREDENTIALS",
    "CONFIG",
    "CONFIGS",
    "CONNECTED",
    "CONNECTION_IMPORT",
    "CONNECT_LINK",
    "CONNECT_LINK_FORM",
    "CONNECT_SESSION",
    "ENVIRONMENT",
    "HEALTH",
    "INTEGRATION",
    "METADATA",
    "METADATA_OBJECT",
    "REVOCATION_JOB",
    "SESSION_TOKEN",
    "SUCCESS",
]

JsonSchema = dict[str, Any]

_STRING: JsonSchema = {"type": "string"}
_TEXT: JsonSchema = {"type": "string", "minLength": 1}
_OBJECT: JsonSchema = {"type": "object"}


def _object(required: dict[str, JsonSchema], optional: dict[str, JsonSchema] | None = None) -> JsonSchema:
    return {"type": "object", "required": list(required), "properties": required | (optional or {})}


# requests: the form modes' connect endpoints (connect/modes/: api_key.py, basic.py, oauth2_cc.py, app_store.py)
API_KEY = _object({"apiKey": _TEXT})
BASIC = _object({}, {"username": _STRING, "password": _STRING})
# A client secret, or for a private_key_jwt template (okta-cc) the private JWK that signs an assertion.
CLIENT_CREDENTIALS = _object({"client_id": _TEXT}, {"client_secret": _TEXT, "client_private_key": _TEXT}) | {
    "anyOf": [{"required": ["client_secret"]}, {"required": ["client_private_key"]}]
}
APP_STORE = _object(
    {"privateKeyId": _TEXT, "issuerId": _TEXT, "privateKey": _TEXT},
    {"scope": {"type": ["string", "null"]}},
)
# The hosted connect link's form (connect/links.py): API key or Basic fields, params[...] beside them.
CONNECT_LINK_FORM = _object({}, {"apiKey": _STRING, "username": _STRING, "password": _STRING})

# api/config.py reads IntegrationBody itself: both names are required there, the client for OAuth modes.
INTEGRATION = _object(
    {
        "provider": _TEXT,
        "provider_config_key": {"type": "string", "maxLength": 255, "pattern": r"^[a-zA-Z0-9~:.@ _-]+$"},
    },
    {
        "oauth_client_id": {"type": ["string", "null"]},
        "oauth_client_secret": {"type": ["string", "null"]},
        "oauth_scopes": {"type": ["string", "null"], "description": "Comma-separated"},
        "app_link": {"type": ["string", "null"]},
        "custom": {"type": ["object", "null"], "additionalProperties": _STRING},
        "revoke_on_delete": {
            "type": "boolean",
            "description": "Keyway's: deleting a connection revokes its grant at the provider first (default off)",
        },
    },
)
# api/connection_import.py: which credential fields count depends on the integration's auth mode.
CONNECTION_IMPORT = _object(
    {"connection_id": _TEXT, "provider_config_key": _TEXT},
    {
        "connection_config": {"type": ["object", "null"]},
        "metadata": {"type": ["object", "null"]},
        "access_token": _STRING,
        "refresh_token": _STRING,
        "expires_at": {"type": ["string", "number"], "description": "ISO 8601, or unix seconds"},
        "expires_in": {"type": ["integer", "string"], "description": "Seconds"},
        "no_expiration": {"type": "boolean"},
        "raw": _OBJECT,
        "oauth_client_id_override": _STRING,
        "oauth_client_secret_override": _STRING,
        "oauth_token": _STRING,
        "oauth_token_secret": _STRING,
        "username": _STRING,
        "password": _STRING,
        "api_key": _STRING,
        "token_id": _STRING,
        "token_secret": _STRING,
    },
)
# api/metadata.py, node SDK form: one connection id or several.
METADATA = _object(
    {
        "provider_config_key": _TEXT,
        "connection_id": {"anyOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1}]},
        "metadata": _OBJECT,
    }
)
METADATA_OBJECT: JsonSchema = {"type": "object", "description": "The metadata itself (the legacy form)"}

# answers
HEALTH = _object({"result": {"const": "ok"}})
CONNECTED = _object({"providerConfigKey": _STRING, "connectionId": _STRING})
CLIENT_METADATA = _object(
    {
        "client_id": _STRING,
        "client_name": _STRING,
        "client_uri": _STRING,
        "redirect_uris": {"type": "array", "items": _STRING},
        "grant_types": {"type": "array", "items": _STRING},
        "response_types": {"type": "array", "items": _STRING},
        "token_endpoint_auth_method": _STRING,
    }
)
SUCCESS = _object({"success": {"const": True}})
SESSION_TOKEN = _object({"data": _object({"token": _STRING, "connect_link": _STRING, "expires_at": _STRING})})
CONNECT_SESSION = _object(
    {
        "data": _object(
            {
                "endUser": {"type": ["object", "null"]},
                "connectUISettings": _OBJECT,
                "end_user": _OBJECT,
                "organization": {"type": ["object", "null"]},
                "expires_at": _STRING,
            },
            {
                "allowed_integrations": {"type": "array", "items": _STRING},
                "integrations_config_defaults": _OBJECT,
                "isReconnecting": {"type": "boolean"},
                "overrides": _OBJECT,
                "websocketsPath": _STRING,
            },
        )
    }
)
CONNECT_LINK = _object({"data": _object({"token": _STRING, "url": _STRING, "expires_at": _STRING})})
CONFIG = _object({"config": _object({"unique_key": _STRING, "provider": _STRING})})
CONFIGS = _object({"configs": {"type": "array", "items": _object({"unique_key": _STRING, "provider": _STRING})}})
ENVIRONMENT = _object({"environment": _object({"name": _STRING, "public_key": _STRING})})
REVOCATION_JOB = _object(
    {
        "job_id": _STRING,
        "provider_config_key": _STRING,
        "status": _STRING,
        "delete": {"type": "boolean"},
        "total": {"type": "integer"},
        "done": {"type": "integer"},
        "failed": {"type": "integer"},
        "deleted": {"type": "integer"},
    }
)

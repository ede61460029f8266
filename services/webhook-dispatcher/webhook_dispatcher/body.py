"""Which events become Nango auth webhooks, and their body (spec §4.1 send rules, §4.2 payloads).

The body's key order is part of the protocol: receivers verify ``X-Nango-Signature`` by
re-serialising the parsed body with ``JSON.stringify``, which keeps insertion order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from keyway_shared.events import (
    AuthFailed,
    CloudEvent,
    ConnectionCreated,
    ConnectionUpdated,
    ErrorInfo,
    TokenRefreshed,
    TokenRefreshFailed,
)
from keyway_shared.events.models import EndUserInfo
from keyway_shared.jsjson import js_stringify
from keyway_shared.store import WebhookSettings

__all__ = ["AuthWebhook", "Slot", "auth_webhook", "body_text", "should_send", "webhook_urls"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# Built once: json.dumps with any option set builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class AuthWebhook:
    operation: str  # creation | override | refresh | unknown
    body: dict[str, Any]


def _body(
    event: CloudEvent[Any], data: Any, *, operation: str, success: bool, error: ErrorInfo | None = None
) -> AuthWebhook:
    body: dict[str, Any] = {
        "from": "nango",
        "type": "auth",
        "connectionId": data.connection_id,
        "providerConfigKey": data.provider_config_key,
        "authMode": data.auth_mode,
        "provider": data.provider,
        "environment": event.environment,
        "operation": operation,
    }
    # Nango's current body says whom the connection belongs to, between ``operation`` and ``success``.
    tags = getattr(data, "tags", None)
    if tags is not None:
        body["tags"] = tags
    end_user: EndUserInfo | None = getattr(data, "end_user", None)
    if end_user is not None:
        body["endUser"] = _end_user(end_user)
    body["success"] = success
    if error is not None:
        body["error"] = {"type": error.type, "description": error.description}
    return AuthWebhook(operation=operation, body=body)


def _end_user(end_user: EndUserInfo) -> dict[str, Any]:
    """Nango's ``endUser``: its email null when it has none, its organization's id only when it has one."""
    shown: dict[str, Any] = {"endUserId": end_user.id, "endUserEmail": end_user.email}
    if end_user.organization is not None:
        shown["organizationId"] = end_user.organization.id
    shown["tags"] = end_user.tags or {}
    return shown


Slot = Literal["primary", "secondary", "override"]


def webhook_urls(settings: WebhookSettings, event: CloudEvent[Any]) -> list[tuple[Slot, str]]:
    """Where the event's webhook goes: the connection's ``webhook_url_override`` instead of both of the
    environment's URLs when it has one (Nango's ``resolveWebhookSettings`` drops the secondary too),
    else the environment's."""
    override = getattr(event.data, "webhook_url_override", None)
    if isinstance(override, str) and override.strip():
        return [("override", override)]
    slots: list[tuple[Slot, str | None]] = [
        ("primary", settings.primary_url),
        ("secondary", settings.secondary_url),
    ]
    return [(slot, url) for slot, url in slots if url]


def auth_webhook(event: CloudEvent[Any]) -> AuthWebhook | None:
    """The webhook an event calls for, or None (deletions, metadata changes, plain refreshes)."""
    data = event.data
    if isinstance(data, ConnectionCreated):
        return _body(event, data, operation="creation", success=True)
    if isinstance(data, ConnectionUpdated):
        # Only a re-authorization is an auth webhook; a metadata or config change is not.
        return _body(event, data, operation="override", success=True) if data.operation == "override" else None
    if isinstance(data, AuthFailed):
        return _body(event, data, operation=data.operation, success=False, error=data.error)
    if isinstance(data, TokenRefreshFailed):
        return _body(event, data, operation="refresh", success=False, error=data.error)
    if isinstance(data, TokenRefreshed):
        # A routine refresh is silent; the app hears about the one that ends a failing streak.
        return _body(event, data, operation="refresh", success=True) if data.recovered else None
    return None


def should_send(settings: WebhookSettings, operation: str, *, has_url: bool | None = None) -> bool:
    """Nango's ``shouldSend``: each toggle gates one operation, the others always go (URL permitting:
    ``has_url``, the environment's URLs when not said, a connection's override counting as one)."""
    if not (settings.urls() if has_url is None else has_url):
        return False
    if operation == "creation":
        return settings.on_auth_creation
    if operation == "refresh":
        return settings.on_auth_refresh_error
    return True


def body_text(body: Mapping[str, Any]) -> str:
    """The body as ``JSON.stringify`` writes it, the way :func:`js_stringify` does, at a fraction of its cost.

    An auth body holds only strings, booleans, nulls and a nested object, under keys that are not
    integer-like: for those ``json.dumps`` (no spaces, no ASCII escaping) writes the same text as
    JavaScript, a lone surrogate aside. Anything else takes the general path.
    """
    if _plain(body):
        text = _ENCODER.encode(body)
        if text.isascii() or not _SURROGATE.search(text):  # isascii: a C scan, no regex for the usual body
            return text
    return js_stringify(body)


def _plain(value: Mapping[str, Any]) -> bool:
    for key, item in value.items():
        if type(key) is not str or key.isdigit():  # JS lists integer-like keys first
            return False
        kind = type(item)
        if kind is str or kind is bool or item is None:  # exact types first: a Mapping check is an ABC's
            continue
        if isinstance(item, Mapping):
            if not _plain(item):
                return False
        elif not isinstance(item, str | bool):
            return False
    return True

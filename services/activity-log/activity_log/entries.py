"""From an event to an activity entry: the operation it belongs to and the message it adds.

One operation per logical action (a connect attempt, a refresh, a webhook delivery, an admin
change) holds the state; one message per event tells the step. The operation id is the event's
``operation_id`` when the producer gave one (so the steps of one connect attempt nest together),
else the event id (a one-event operation). Everything a person may read later (text, URL, body,
meta, error) is redacted here once more, whatever the producer did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyway_shared.activity import body_excerpt, redacted_text, redacted_url, words
from keyway_shared.events import (
    ActivityMessage,
    AuthFailed,
    CloudEvent,
    ConnectionUpdated,
    ErrorInfo,
    TokenRefreshed,
    TokenRefreshFailed,
    WebhookDelivered,
    WebhookFailed,
)
from keyway_shared.logging import redact

__all__ = ["DEFAULT_DEADLINES", "TERMINAL_STATES", "Entry", "entry_for"]

TERMINAL_STATES = frozenset({"success", "failed", "timeout"})
# Operations that end as ``timeout`` when nothing finishes them: a connect attempt whose callback
# never came (Nango gives auth operations the same 5 minutes).
DEFAULT_DEADLINES: Mapping[str, timedelta] = {"auth:create_connection": timedelta(minutes=5)}
_MAX_META_BYTES = 8192


@dataclass(frozen=True, kw_only=True)
class Entry:
    """What one event contributes: a change to its operation and one message."""

    event_id: str
    operation_id: str
    operation_type: str
    state: str | None  # None: the event says nothing about the operation's state
    error: dict[str, str] | None
    environment: str
    provider_config_key: str | None
    provider: str | None
    connection_id: str | None
    at: datetime  # the event's time, not the time we stored it: order by when things happened
    expires_at: datetime
    timeout_at: datetime | None  # when a still unfinished operation becomes ``timeout``
    words: tuple[str, ...]  # what free-text search finds the operation by
    message: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class _Told:
    operation_type: str
    state: str | None
    level: str
    text: str
    error: ErrorInfo | None = None
    request: dict[str, Any] | None = None


def _tell(event: CloudEvent[Any]) -> _Told:
    data = event.data
    match event.type:
        case "connection.created":
            return _Told(
                operation_type="auth:create_connection", state="success", level="info", text="Connection created"
            )
        case "connection.updated":
            assert isinstance(data, ConnectionUpdated)
            if data.operation == "override":
                return _Told(
                    operation_type="auth:create_connection",
                    state="success",
                    level="info",
                    text="Connection re-authorized (override)",
                )
            return _Told(
                operation_type="admin:update_connection",
                state="success",
                level="info",
                text=f"Connection {'metadata' if data.operation == 'metadata' else 'configuration'} updated",
            )
        case "connection.deleted":
            return _Told(
                operation_type="admin:delete_connection", state="success", level="info", text="Connection deleted"
            )
        case "auth.failed":
            assert isinstance(data, AuthFailed)
            return _Told(
                operation_type="auth:create_connection",
                state="failed",
                level="error",
                text=f"Authorization failed: {data.error.description}",
                error=data.error,
            )
        case "token.refreshed":
            assert isinstance(data, TokenRefreshed)
            text = "Token refreshed" + (" (recovered after failing)" if data.recovered else "")
            return _Told(operation_type="auth:refresh_token", state="success", level="info", text=text)
        case "token.refresh_failed":
            assert isinstance(data, TokenRefreshFailed)
            text = f"Token refresh failed: {data.error.description}"
            if data.exhausted:
                text += " (no further automatic attempts)"
            return _Told(
                operation_type="auth:refresh_token", state="failed", level="error", text=text, error=data.error
            )
        case "webhook.delivered":
            assert isinstance(data, WebhookDelivered)
            return _Told(
                operation_type="webhook:outgoing",
                state="success",
                level="info",
                text=f"Webhook delivered to {data.url} (HTTP {data.status}, attempt {data.attempt})",
                request={"method": "POST", "url": data.url, "status": data.status, "duration_ms": data.duration_ms},
            )
        case "webhook.failed":
            assert isinstance(data, WebhookFailed)
            return _Told(
                operation_type="webhook:outgoing",
                # A failure with retries left leaves the delivery running; only the last one ends it.
                state="failed" if data.final else "running",
                level="error" if data.final else "warn",
                text=f"Webhook delivery to {data.url} failed (attempt {data.attempt}): {data.error.description}"
                + ("" if data.final else "; will retry"),
                error=data.error if data.final else None,
                request={"method": "POST", "url": data.url, "status": data.status},
            )
        case "activity.message":
            assert isinstance(data, ActivityMessage)
            error = ErrorInfo(type="unknown", description=data.message) if data.state == "failed" else None
            return _Told(
                operation_type=data.operation_type,
                state=data.state,
                level=data.level,
                text=data.message,
                error=error,
                request=data.request.model_dump(mode="json", exclude_none=True) if data.request else None,
            )
    # An event type newer than this service: still logged, as its own operation.
    return _Told(operation_type=f"event:{event.type}", state=None, level="info", text=event.type)


def _optional_str(data: Any, name: str) -> str | None:
    # getattr also reads fields a producer added beyond the model (EventData keeps extras).
    value = getattr(data, name, None)
    return value if isinstance(value, str) and value else None


def _request(request: dict[str, Any]) -> dict[str, Any]:
    cleaned = redact({k: v for k, v in request.items() if k not in {"url", "body"}})
    if "url" in request:
        cleaned["url"] = redacted_url(str(request["url"]))
    body = body_excerpt(request.get("body"))
    if body is not None:
        cleaned["body"] = body
    return dict(cleaned)


def _meta(meta: dict[str, Any]) -> dict[str, Any]:
    cleaned = redact(meta)
    text = json.dumps(cleaned, default=str)
    if len(text.encode()) > _MAX_META_BYTES:
        return {"truncated": body_excerpt(text)}
    return dict(cleaned)


def entry_for(
    event: CloudEvent[Any], *, retention: timedelta, deadlines: Mapping[str, timedelta] = DEFAULT_DEADLINES
) -> Entry:
    told = _tell(event)
    data = event.data
    operation_id = _optional_str(data, "operation_id") or event.id
    expires_at = event.time + retention
    # A domain event's payload is its own story (events carry no secrets by design).
    meta = data.meta if isinstance(data, ActivityMessage) else data.model_dump(mode="json", exclude_none=True)
    text = redacted_text(told.text)
    error = told.error.model_dump(mode="json") if told.error else None
    if error is not None:
        error = {k: redacted_text(str(v)) for k, v in error.items()}
    message: dict[str, Any] = {
        "_id": event.id,  # a redelivered event is a duplicate key, so it is stored once
        "operation_id": operation_id,
        "level": told.level,
        "message": text,
        "created_at": event.time,
        "event_type": event.type,
        "source": event.source,
        "environment": event.environment,
        "expires_at": expires_at,
    }
    if told.request:
        message["request"] = _request(told.request)
    if meta:
        message["meta"] = _meta(meta)
    deadline = deadlines.get(told.operation_type)
    url = message.get("request", {}).get("url")
    return Entry(
        event_id=event.id,
        operation_id=operation_id,
        operation_type=told.operation_type,
        state=told.state,
        error=error,
        environment=event.environment,
        provider_config_key=_optional_str(data, "provider_config_key"),
        provider=_optional_str(data, "provider"),
        connection_id=_optional_str(data, "connection_id"),
        at=event.time,
        expires_at=expires_at,
        timeout_at=event.time + deadline if deadline is not None else None,
        words=tuple(words(text, url, error["type"] if error else None)),
        message=message,
    )

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
from keyway_shared.events import CloudEvent
from keyway_shared.logging import redact

from .wire import WireEvent, wire_event

__all__ = ["DEFAULT_DEADLINES", "TERMINAL_STATES", "Entry", "entry_for"]

TERMINAL_STATES = frozenset({"success", "failed", "timeout"})
# Operations that end as ``timeout`` when nothing finishes them: a connect attempt whose callback
# never came (Nango gives auth operations the same 5 minutes).
DEFAULT_DEADLINES: Mapping[str, timedelta] = {"auth:create_connection": timedelta(minutes=5)}
_MAX_META_BYTES = 8192
_QUICK_META_BYTES = 1024  # see _meta


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
    text: str  # redacted
    error: dict[str, str] | None = None  # redacted
    request: dict[str, Any] | None = None  # not yet redacted, but for its ``url`` when ``url_clean``
    url_clean: bool = False


def _error(error: dict[str, Any]) -> dict[str, str]:
    return {k: redacted_text(str(v)) for k, v in error.items()}


def _tell(event: WireEvent) -> _Told:
    """What the event says. Each producer string is redacted once here, and reused where it recurs
    (a webhook's URL in its text and its request; an error's description in its text)."""
    data = event.data
    match event.type:
        case "connection.created":
            return _Told(
                operation_type="auth:create_connection", state="success", level="info", text="Connection created"
            )
        case "connection.updated":
            if data["operation"] == "override":
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
                text=f"Connection {'metadata' if data['operation'] == 'metadata' else 'configuration'} updated",
            )
        case "connection.deleted":
            return _Told(
                operation_type="admin:delete_connection", state="success", level="info", text="Connection deleted"
            )
        case "auth.failed":
            error = _error(data["error"])
            return _Told(
                operation_type="auth:create_connection",
                state="failed",
                level="error",
                text=f"Authorization failed: {error['description']}",
                error=error,
            )
        case "token.refreshed":
            text = "Token refreshed" + (" (recovered after failing)" if data["recovered"] else "")
            return _Told(operation_type="auth:refresh_token", state="success", level="info", text=text)
        case "token.refresh_failed":
            error = _error(data["error"])
            text = f"Token refresh failed: {error['description']}"
            if data["exhausted"]:
                text += " (no further automatic attempts)"
            return _Told(operation_type="auth:refresh_token", state="failed", level="error", text=text, error=error)
        case "webhook.delivered":
            url = redacted_url(data["url"])
            return _Told(
                operation_type="webhook:outgoing",
                state="success",
                level="info",
                text=f"Webhook delivered to {url} (HTTP {data['status']}, attempt {data['attempt']})",
                request={"method": "POST", "url": url, "status": data["status"], "duration_ms": data["duration_ms"]},
                url_clean=True,
            )
        case "webhook.failed":
            url, final = redacted_url(data["url"]), data["final"]
            error = _error(data["error"])
            request = {"method": "POST", "url": url}
            if data.get("status") is not None:
                request["status"] = data["status"]
            return _Told(
                operation_type="webhook:outgoing",
                # A failure with retries left leaves the delivery running; only the last one ends it.
                state="failed" if final else "running",
                level="error" if final else "warn",
                text=f"Webhook delivery to {url} failed (attempt {data['attempt']}): {error['description']}"
                + ("" if final else "; will retry"),
                error=error if final else None,
                request=request,
                url_clean=True,
            )
        case "activity.message":
            text = redacted_text(data["message"])
            return _Told(
                operation_type=data["operation_type"],
                state=data.get("state"),
                level=data["level"],
                text=text,
                error={"type": "unknown", "description": text} if data.get("state") == "failed" else None,
                request=data.get("request"),
            )
    # An event type newer than this service: still logged, as its own operation.
    return _Told(operation_type=f"event:{event.type}", state=None, level="info", text=redacted_text(event.type))


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    # Also reads fields a producer added beyond the model (the models keep extras).
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def _request(request: dict[str, Any], *, url_clean: bool) -> dict[str, Any]:
    cleaned = redact({k: v for k, v in request.items() if k not in {"url", "body"}})
    if "url" in request:
        cleaned["url"] = request["url"] if url_clean else redacted_url(str(request["url"]))
    body = body_excerpt(request.get("body"))
    if body is not None:
        cleaned["body"] = body
    return dict(cleaned)


def _meta(meta: dict[str, Any], *, wire_size: int | None) -> dict[str, Any]:
    cleaned = redact(meta)
    # Redaction grows a JSON text at most about 6-fold (a "[REDACTED]" for an empty list nested too
    # deep); an event of at most _QUICK_META_BYTES on the wire cannot give meta over the limit,
    # defaults filled in included, so it skips the measuring.
    if wire_size is not None and wire_size <= _QUICK_META_BYTES:
        return dict(cleaned)
    text = json.dumps(cleaned, default=str)
    if len(text.encode()) > _MAX_META_BYTES:
        return {"truncated": body_excerpt(text)}
    return dict(cleaned)


def entry_for(
    event: WireEvent | CloudEvent[Any],
    *,
    retention: timedelta,
    deadlines: Mapping[str, timedelta] = DEFAULT_DEADLINES,
) -> Entry:
    if not isinstance(event, WireEvent):
        event = wire_event(event)
    told = _tell(event)
    data = event.data
    operation_id = _optional_str(data, "operation_id") or event.id
    expires_at = event.time + retention
    message: dict[str, Any] = {
        "_id": event.id,  # a redelivered event is a duplicate key, so it is stored once
        "operation_id": operation_id,
        "level": told.level,
        "message": told.text,
        "created_at": event.time,
        "event_type": event.type,
        "source": event.source,
        "environment": event.environment,
        "expires_at": expires_at,
    }
    url = None
    if told.request:
        request = message["request"] = _request(told.request, url_clean=told.url_clean)
        url = request.get("url")
    # A domain event's payload is its own story (events carry no secrets by design).
    meta = data.get("meta") if event.type == "activity.message" else data
    if meta:
        cleaned = message["meta"] = _meta(meta, wire_size=event.size)
        if told.url_clean and isinstance(cleaned.get("url"), str):
            cleaned["url"] = url  # the URL as the request keeps it, its user and secrets masked
    deadline = deadlines.get(told.operation_type)
    error = told.error
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
        words=tuple(words(told.text, url, error["type"] if error else None)),
        message=message,
    )

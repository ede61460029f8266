"""Keyway events: the CloudEvents envelope, one model per type, and the codec between them and bytes."""

from .codec import EventDecodeError, decode_event, encode_event, make_event
from .envelope import CloudEvent, EventData, new_event_id, utcnow
from .models import (
    EVENT_MODELS,
    ActivityMessage,
    AuthFailed,
    AuthMode,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionEventData,
    ConnectionUpdated,
    ErrorInfo,
    HttpExcerpt,
    TokenRefreshed,
    TokenRefreshFailed,
    WebhookDelivered,
    WebhookEndpointDisabled,
    WebhookFailed,
    WebhookReplayRequested,
)

__all__ = [
    "EVENT_MODELS",
    "ActivityMessage",
    "AuthFailed",
    "AuthMode",
    "CloudEvent",
    "ConnectionCreated",
    "ConnectionDeleted",
    "ConnectionEventData",
    "ConnectionUpdated",
    "ErrorInfo",
    "EventData",
    "EventDecodeError",
    "HttpExcerpt",
    "TokenRefreshFailed",
    "TokenRefreshed",
    "WebhookDelivered",
    "WebhookEndpointDisabled",
    "WebhookFailed",
    "WebhookReplayRequested",
    "decode_event",
    "encode_event",
    "make_event",
    "new_event_id",
    "utcnow",
]

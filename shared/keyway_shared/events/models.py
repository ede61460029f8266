"""One pydantic model per Keyway event type: the public shape subscribers rely on.

No model carries a secret. Connection events say *that* credentials changed, with their type and
expiry, never their value; consumers that need the credentials read them from the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ..auth_modes import AuthMode
from .envelope import EventData

__all__ = [
    "EVENT_MODELS",
    "ActivityMessage",
    "AuthFailed",
    "AuthMode",
    "ConnectionCreated",
    "ConnectionDeleted",
    "ConnectionEventData",
    "ConnectionUpdated",
    "EndUserInfo",
    "ErrorInfo",
    "HttpExcerpt",
    "OrganizationInfo",
    "TokenRefreshFailed",
    "TokenRefreshed",
    "WebhookDelivered",
    "WebhookEndpointDisabled",
    "WebhookFailed",
    "WebhookReplayRequested",
]


class ErrorInfo(EventData):
    type: str = Field(description="a stable machine-readable code, e.g. token_err, refresh_token_external_error")
    description: str = Field(description="a human-readable message; never holds a secret")


class OrganizationInfo(EventData):
    id: str
    display_name: str | None = None


class EndUserInfo(EventData):
    """The end user a connection belongs to: the one its connect session named."""

    id: str
    email: str | None = None
    display_name: str | None = None
    tags: dict[str, str] | None = Field(default=None, description="the end user's own tags")
    organization: OrganizationInfo | None = None


class ConnectionEventData(EventData):
    connection_id: str
    provider_config_key: str
    provider: str
    auth_mode: AuthMode
    operation_id: str | None = Field(default=None, description="activity-log operation this belongs to")
    credentials_expire_at: datetime | None = None
    # Who the connection belongs to, when it says (absent from connections that never did).
    end_user: EndUserInfo | None = Field(default=None, description="its end user, from its connect session")
    tags: dict[str, str] | None = Field(default=None, description="its tags (Nango's connection tags)")
    webhook_url_override: str | None = Field(
        default=None, description="its webhooks go to this URL instead of the environment's"
    )


class ConnectionCreated(ConnectionEventData):
    """A connection was authorized for the first time."""

    operation: Literal["creation"] = "creation"


class ConnectionUpdated(ConnectionEventData):
    """An existing connection was authorized again (Nango's ``override``) or its settings changed."""

    operation: Literal["override", "metadata", "config"] = "override"


class ConnectionDeleted(ConnectionEventData):
    """A connection was deleted."""


class AuthFailed(EventData):
    """A connect attempt failed; no connection was written."""

    connection_id: str | None = None
    provider_config_key: str | None = None
    provider: str | None = None
    auth_mode: AuthMode | None = None
    operation: Literal["creation", "override", "unknown"] = "creation"
    operation_id: str | None = None
    error: ErrorInfo


class TokenRefreshed(ConnectionEventData):
    """Credentials were refreshed; ``recovered`` is true when the previous attempt had failed."""

    recovered: bool = False
    attempt: int = 1


class TokenRefreshFailed(ConnectionEventData):
    error: ErrorInfo
    failed_days: int = Field(default=1, description="consecutive days with a failing refresh")
    exhausted: bool = Field(default=False, description="true once the connection is no longer retried")


class _WebhookAttempt(EventData):
    delivery_id: str = Field(description="one event sent to one URL; every attempt and replay of it shares this id")
    event_id: str = Field(description="the event the webhook was sent for")
    url: str
    attempt: int = Field(description="1 for the first attempt of a delivery (or of a replay of it)")
    operation_id: str | None = None
    webhook_id: str | None = Field(default=None, description="the webhook-id header, the same on every attempt")
    trigger: Literal["event", "replay"] = "event"
    connection_id: str | None = None
    provider_config_key: str | None = None
    provider: str | None = None


class WebhookDelivered(_WebhookAttempt):
    """An attempt got a 2xx answer: the delivery is done."""

    status: int
    duration_ms: float


class WebhookFailed(_WebhookAttempt):
    """An attempt failed; ``final`` says whether the delivery gave up (after the last attempt, a 410,
    or a disabled endpoint) or another attempt is due at ``next_attempt_at``."""

    status: int | None = None
    error: ErrorInfo
    final: bool = Field(default=True, description="false while retries remain")
    next_attempt_at: datetime | None = None


class WebhookReplayRequested(EventData):
    """A command from the API: send one delivery again, or every delivery that failed in a time range."""

    delivery_id: str | None = Field(default=None, description="replay this delivery (else every failed one)")
    since: datetime | None = Field(default=None, description="failed deliveries whose last attempt is this recent")
    until: datetime | None = None


class WebhookEndpointDisabled(EventData):
    """A webhook URL stopped receiving: it answered 410 Gone, or its deliveries kept failing for days."""

    url: str
    reason: Literal["gone", "failing"]
    failing_since: datetime | None = Field(default=None, description="first exhausted delivery (reason failing)")
    delivery_id: str | None = Field(default=None, description="the delivery whose outcome disabled it")
    operation_id: str | None = None


class HttpExcerpt(EventData):
    method: str
    url: str
    status: int | None = None
    duration_ms: float | None = None
    body: str | None = Field(default=None, description="at most 4 KB, redacted")


class ActivityMessage(EventData):
    """A step of an operation, told by the service that took it, for the activity log."""

    operation_id: str
    operation_type: str = Field(description="e.g. auth:create_connection, auth:refresh_token, webhook:outgoing")
    level: Literal["debug", "info", "warn", "error"] = "info"
    message: str
    state: Literal["waiting", "running", "success", "failed", "timeout"] | None = None
    provider_config_key: str | None = None
    provider: str | None = None
    connection_id: str | None = None
    request: HttpExcerpt | None = None
    meta: dict[str, Any] | None = None


EVENT_MODELS: dict[str, type[EventData]] = {
    "connection.created": ConnectionCreated,
    "connection.updated": ConnectionUpdated,
    "connection.deleted": ConnectionDeleted,
    "auth.failed": AuthFailed,
    "token.refreshed": TokenRefreshed,
    "token.refresh_failed": TokenRefreshFailed,
    "webhook.delivered": WebhookDelivered,
    "webhook.failed": WebhookFailed,
    "webhook.replay_requested": WebhookReplayRequested,
    "webhook.endpoint_disabled": WebhookEndpointDisabled,
    "activity.message": ActivityMessage,
}

"""The webhook dispatcher's settings: the shared ones plus its port, timeout and record retention."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from keyway_shared.settings import BaseServiceSettings

__all__ = ["DispatcherSettings"]


class DispatcherSettings(BaseServiceSettings):
    host: str = Field(default="0.0.0.0", validation_alias=AliasChoices("KEYWAY_HOST", "host"))  # noqa: S104 - a server
    port: int = Field(
        default=3020, ge=1, le=65535, validation_alias=AliasChoices("KEYWAY_WEBHOOK_DISPATCHER_PORT", "port")
    )
    webhook_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long one delivery attempt may take, connect to last byte",
        validation_alias=AliasChoices("KEYWAY_WEBHOOK_TIMEOUT_SECONDS", "webhook_timeout_seconds"),
    )
    delivery_retention_days: float = Field(
        default=15.0,
        gt=0,
        description="how long delivery attempts are kept (a TTL index removes them afterwards)",
        validation_alias=AliasChoices("KEYWAY_WEBHOOK_DELIVERY_RETENTION_DAYS", "delivery_retention_days"),
    )

"""The activity-log service's settings: the shared ones plus its port, retention and batching."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from keyway_shared.settings import BaseServiceSettings

__all__ = ["ActivityLogSettings"]


class ActivityLogSettings(BaseServiceSettings):
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a container serves its health port on every interface
        validation_alias=AliasChoices("KEYWAY_HOST", "host"),
    )
    port: int = Field(default=3010, ge=1, le=65535, validation_alias=AliasChoices("KEYWAY_ACTIVITY_LOG_PORT", "port"))
    retention_days: float = Field(
        default=15.0,
        gt=0,
        description="how long operations and messages are kept (a TTL index removes them afterwards)",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_RETENTION_DAYS", "retention_days"),
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        description="entries written per round trip at most; also the consumer's prefetch",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_BATCH_SIZE", "batch_size"),
    )
    batch_delay_ms: float = Field(
        default=50.0,
        ge=0,
        description="how long the first entry of a batch waits for company before it is written",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_BATCH_DELAY_MS", "batch_delay_ms"),
    )

"""The activity-log service's settings: the shared ones plus its port, retention, batching and timeouts."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from keyway_shared.settings import BaseServiceSettings, health_port

__all__ = ["ActivityLogSettings"]


class ActivityLogSettings(BaseServiceSettings):
    port: int = health_port(3010, "KEYWAY_ACTIVITY_LOG_PORT")
    retention_days: float = Field(
        default=15.0,
        gt=0,
        description="how long operations and messages are kept (a TTL index removes them afterwards)",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_RETENTION_DAYS", "retention_days"),
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        description="entries written per round trip at most (one insert per collection, one ack)",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_BATCH_SIZE", "batch_size"),
    )
    batches_in_flight: int = Field(
        default=2,
        ge=1,
        description="batches held at once (prefetch = batch size x this): one fills while the others are written",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_BATCHES_IN_FLIGHT", "batches_in_flight"),
    )
    connect_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="a connect attempt still waiting or running this long after it started ends as 'timeout'",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_CONNECT_TIMEOUT_SECONDS", "connect_timeout_seconds"),
    )
    timeout_sweep_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how often unfinished operations past their deadline are looked for",
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_TIMEOUT_SWEEP_SECONDS", "timeout_sweep_seconds"),
    )
    batch_delay_ms: float = Field(
        default=50.0,
        ge=0,
        description=(
            "when nothing is being written, how long a first entry waits for company; "
            "under load a batch goes as soon as the write before it ends"
        ),
        validation_alias=AliasChoices("KEYWAY_ACTIVITY_BATCH_DELAY_MS", "batch_delay_ms"),
    )

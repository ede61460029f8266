"""The webhook dispatcher's settings: the shared ones plus timeouts, the retry schedule, endpoint health."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator

from keyway_shared.bus import WEBHOOK_SEND_SCHEDULE
from keyway_shared.settings import BaseServiceSettings, health_port

__all__ = ["DispatcherSettings"]


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class DispatcherSettings(BaseServiceSettings):
    port: int = health_port(3020, "KEYWAY_WEBHOOK_DISPATCHER_PORT")
    webhook_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long one delivery attempt may take, connect to last byte",
        validation_alias=_alias("KEYWAY_WEBHOOK_TIMEOUT_SECONDS", "webhook_timeout_seconds"),
    )
    delivery_retention_days: float = Field(
        default=15.0,
        gt=0,
        description="how long delivery attempts are kept (a TTL index removes them afterwards)",
        validation_alias=_alias("KEYWAY_WEBHOOK_DELIVERY_RETENTION_DAYS", "delivery_retention_days"),
    )
    retry_schedule: tuple[float, ...] = Field(
        default=WEBHOOK_SEND_SCHEDULE.delays,
        description="seconds to wait after each failed attempt (comma-separated); one more attempt than delays",
        validation_alias=_alias("KEYWAY_WEBHOOK_RETRY_SCHEDULE", "retry_schedule"),
    )
    retry_scale: float = Field(
        default=1.0,
        gt=0,
        description="multiplies every wait (schedule, overload minimum); e.g. 0.001 compresses a day into 100 s",
        validation_alias=_alias("KEYWAY_WEBHOOK_RETRY_SCALE", "retry_scale"),
    )
    retry_jitter: float = Field(
        default=WEBHOOK_SEND_SCHEDULE.jitter,
        ge=0,
        lt=1,
        description="± fraction of each scheduled wait, so receivers coming back are not stampeded",
        validation_alias=_alias("KEYWAY_WEBHOOK_RETRY_JITTER", "retry_jitter"),
    )
    overload_min_delay_seconds: float = Field(
        default=60.0,
        ge=0,
        description="the least wait after a 429 or a timeout (scaled with the schedule)",
        validation_alias=_alias("KEYWAY_WEBHOOK_OVERLOAD_MIN_DELAY_SECONDS", "overload_min_delay_seconds"),
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="failures of one URL within the window that open its circuit breaker",
        validation_alias=_alias("KEYWAY_WEBHOOK_BREAKER_FAILURES", "breaker_failures"),
    )
    breaker_window_seconds: float = Field(
        default=10.0,
        gt=0,
        description="the window in which breaker failures are counted",
        validation_alias=_alias("KEYWAY_WEBHOOK_BREAKER_WINDOW_SECONDS", "breaker_window_seconds"),
    )
    breaker_cooldown_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long an open breaker short-circuits attempts before one probe is let through",
        validation_alias=_alias("KEYWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS", "breaker_cooldown_seconds"),
    )
    disable_after_seconds: float = Field(
        default=5 * 24 * 3600.0,
        gt=0,
        description="an endpoint whose deliveries keep exhausting their retries this long is disabled",
        validation_alias=_alias("KEYWAY_WEBHOOK_DISABLE_AFTER_SECONDS", "disable_after_seconds"),
    )
    cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how long environment settings, signing keys and endpoint states are cached (0: not at all)",
        validation_alias=_alias("KEYWAY_WEBHOOK_CACHE_SECONDS", "cache_seconds"),
    )
    concurrency: int = Field(
        default=64,
        ge=1,
        description="deliveries in flight per queue (the prefetch of the event and send queues)",
        validation_alias=_alias("KEYWAY_WEBHOOK_CONCURRENCY", "concurrency"),
    )

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return tuple(float(part) for part in text.split(",") if part.strip())
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay <= 0 for delay in value):
            raise ValueError("every wait in the retry schedule must be positive")
        return value

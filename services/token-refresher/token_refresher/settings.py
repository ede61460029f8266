"""The token refresher's settings: the shared ones plus its port, the refresh loop and the outbox relay.

The refresh margin is not a setting here: it is per provider template (``token_expiration_buffer``,
15 minutes by default), the same one the gateway uses when it writes a connection.
"""

from __future__ import annotations

from typing import Self

from pydantic import AliasChoices, Field, model_validator

from keyway_shared.settings import BaseServiceSettings, health_port

__all__ = ["RefresherSettings"]


class RefresherSettings(BaseServiceSettings):
    port: int = health_port(3030, "KEYWAY_TOKEN_REFRESHER_PORT")
    refresh_loop: bool = Field(
        default=True,
        description="run the refresh loop; off, the replica only keeps due times current",
        validation_alias=AliasChoices("KEYWAY_REFRESH_LOOP", "refresh_loop"),
    )
    refresh_concurrency: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="refreshes one replica runs at the same time",
        validation_alias=AliasChoices("KEYWAY_REFRESH_CONCURRENCY", "refresh_concurrency"),
    )
    refresh_batch: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="most refreshes one round starts (it reads four times as many candidates to pick from)",
        validation_alias=AliasChoices("KEYWAY_REFRESH_BATCH", "refresh_batch"),
    )
    refresh_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "how long a claim holds a connection unless renewed; a refresh renews it every third of this"
            " while it runs, so a replica that dies loses its claims after this"
        ),
        validation_alias=AliasChoices("KEYWAY_REFRESH_LEASE_SECONDS", "refresh_lease_seconds"),
    )
    refresh_max_sleep_seconds: float = Field(
        default=30.0,
        gt=0,
        description="longest idle sleep between looks at the due index (events wake the loop earlier)",
        validation_alias=AliasChoices("KEYWAY_REFRESH_MAX_SLEEP_SECONDS", "refresh_max_sleep_seconds"),
    )
    provider_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="one token request, connect to last byte; must end well inside the lease",
        validation_alias=AliasChoices("KEYWAY_PROVIDER_TIMEOUT_SECONDS", "provider_timeout_seconds"),
    )
    outbox_sweep_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how often the relay looks for outbox rows nobody published (broker was down)",
        validation_alias=AliasChoices("KEYWAY_OUTBOX_SWEEP_SECONDS", "outbox_sweep_seconds"),
    )
    outbox_stale_seconds: float = Field(
        default=10.0,
        gt=0,
        description="an outbox row older than this is fair game for any replica's relay",
        validation_alias=AliasChoices("KEYWAY_OUTBOX_STALE_SECONDS", "outbox_stale_seconds"),
    )

    @model_validator(mode="after")
    def _timeout_inside_lease(self) -> Self:
        # A provider call outliving the lease lets another replica spend the same rotating refresh
        # token, and a strict provider then revokes the whole grant.
        if self.provider_timeout_seconds >= self.refresh_lease_seconds:
            raise ValueError("provider_timeout_seconds must be shorter than refresh_lease_seconds")
        return self

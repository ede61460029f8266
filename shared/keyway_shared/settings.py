"""Settings every Keyway service shares, read from the environment once, in the entry point.

Nothing here runs at import time: a service's ``__main__`` builds its settings object and passes it
down, and tests construct settings directly with keyword arguments.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["BaseServiceSettings", "health_port", "parse_cidrs"]


def parse_cidrs(value: object) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Turn ``"127.0.0.1/32, ::1/128"`` (or a list) into networks; empty means none."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in items:
        text = str(item).strip()
        if text:
            networks.append(ipaddress.ip_network(text, strict=False))
    return networks


def health_port(default: int, variable: str) -> Any:
    """The ``port`` field of a consumer service: where it answers /healthz, /readyz and /metrics."""
    return Field(
        default=default,
        ge=1,
        le=65535,
        description="health and metrics port",
        validation_alias=AliasChoices(variable, "port"),
    )


class BaseServiceSettings(BaseSettings):
    """The knobs every service reads. Services subclass it and add their own."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a container serves on every interface
        description="the address the service listens on",
        validation_alias=AliasChoices("KEYWAY_HOST", "host"),
    )
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description="RabbitMQ (amqps:// for TLS); credentials in the URL",
        validation_alias=AliasChoices("AMQP_URL", "KEYWAY_AMQP_URL", "amqp_url"),
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/?retryWrites=false",
        description="MongoDB, a replica set (transactions); `make up` starts an embedded one when unset",
        validation_alias=AliasChoices("MONGODB_URL", "KEYWAY_MONGODB_URL", "mongodb_url"),
    )
    mongodb_database: str = Field(
        default="keyway",
        description="the database every collection lives in",
        validation_alias=AliasChoices("MONGODB_DATABASE", "KEYWAY_MONGODB_DATABASE", "mongodb_database"),
    )
    log_level: str = Field(
        default="INFO",
        description="DEBUG, INFO, WARNING or ERROR",
        validation_alias=AliasChoices("KEYWAY_LOG_LEVEL", "log_level"),
    )
    log_json: bool | None = Field(
        default=None,
        description="JSON log lines; unset: JSON unless stderr is a terminal",
        validation_alias=AliasChoices("KEYWAY_LOG_JSON", "log_json"),
    )
    encryption_key: SecretStr = Field(
        default=SecretStr(""),
        description="base64 of 32 random bytes; the key new ciphertexts are written with",
        validation_alias=AliasChoices("KEYWAY_ENCRYPTION_KEY", "encryption_key"),
    )
    encryption_keys_old: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated base64 keys still accepted for reading, during a rotation",
        validation_alias=AliasChoices("KEYWAY_ENCRYPTION_KEYS_OLD", "encryption_keys_old"),
    )
    egress_allowlist: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="CIDRs outbound calls may reach although they are private or loopback",
        validation_alias=AliasChoices("KEYWAY_EGRESS_ALLOWLIST", "egress_allowlist"),
    )
    providers_file: str | None = Field(
        default=None,
        description="YAML file of extra provider templates merged over the built-in catalog",
        validation_alias=AliasChoices("KEYWAY_PROVIDERS_FILE", "providers_file"),
    )
    queue_type: str = Field(
        default="quorum",
        description="'quorum' (replicated, the production default) or 'classic'",
        validation_alias=AliasChoices("KEYWAY_QUEUE_TYPE", "queue_type"),
    )
    bus_namespace: str = Field(
        default="keyway",
        description="prefix of every exchange and queue name; tests give each run its own",
        validation_alias=AliasChoices("KEYWAY_BUS_NAMESPACE", "bus_namespace"),
    )
    shutdown_grace_seconds: float = Field(
        default=10.0,
        description="how long in-flight work may run after SIGTERM before resources close",
        validation_alias=AliasChoices("KEYWAY_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds"),
    )
    broker_outage_bound_seconds: float = Field(
        default=30.0,
        ge=0,
        description="how long RabbitMQ may be unreachable before /readyz answers 503 (0: at once); "
        "the link keeps reconnecting meanwhile, and the gateway keeps serving with its outbox",
        validation_alias=AliasChoices("KEYWAY_BROKER_OUTAGE_BOUND_SECONDS", "broker_outage_bound_seconds"),
    )

    @property
    def events_exchange(self) -> str:
        return "keyway.events" if self.bus_namespace == "keyway" else f"{self.bus_namespace}.events"

    @field_validator("encryption_keys_old", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("egress_allowlist", mode="before")
    @classmethod
    def _parse_allowlist(cls, value: object) -> object:
        return parse_cidrs(value)

    @field_validator("queue_type")
    @classmethod
    def _check_queue_type(cls, value: str) -> str:
        if value not in {"quorum", "classic"}:
            raise ValueError("queue_type must be 'quorum' or 'classic'")
        return value

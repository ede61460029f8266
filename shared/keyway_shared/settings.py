"""Settings every Keyway service shares, read from the environment once, in the entry point.

Nothing here runs at import time: a service's ``__main__`` builds its settings object and passes it
down, and tests construct settings directly with keyword arguments.

A field's environment variables are the names in its ``validation_alias`` (an ``AliasChoices``)
other than the field's own, matched without regard to case, the first one set winning; a keyword
argument for the field, by name or by any of those aliases, wins over all of them. Values arrive as
the strings the environment holds: a list field splits its own text in a ``mode="before"``
validator.

This is the part of pydantic-settings Keyway used, written out: the package, with the argparse,
dotenv and CLI machinery it imports, cost every service process about 1 MB of idle memory (issue
19). It also read each field's own name from the environment (``PORT``, ``HOST``, ``PUBLIC_URL``):
variables a platform may set for its own reasons, never documented here, and no longer read.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["BaseServiceSettings", "EnvironmentSettings", "environment_names", "health_port", "parse_cidrs"]


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


def environment_names(name: str, alias: object) -> list[str]:
    """The environment variables a field reads, in the order they are tried: its alias choices other
    than the field's own name (that one is for keyword arguments), or the name in capitals."""
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = [choice for choice in choices if isinstance(choice, str) and choice != name]
    return names or [name.upper()]


class EnvironmentSettings(BaseModel):
    """A model whose fields not given as keyword arguments come from the environment."""

    # Defaults are validated too, as pydantic-settings did: a default passes the same checks as a value.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _read_environment(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        environment = {key.lower(): value for key, value in os.environ.items()}
        merged = dict(given)
        for name, info in cls.model_fields.items():
            names = environment_names(name, info.validation_alias)
            if name in given or any(choice in given for choice in names):
                continue
            for choice in names:
                value = environment.get(choice.lower())
                if value is not None:
                    merged[name] = value  # by name: every field takes its own (populate_by_name)
                    break
        return merged


class BaseServiceSettings(EnvironmentSettings):
    """The knobs every service reads. Services subclass it and add their own."""

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
    encryption_keys_old: list[SecretStr] = Field(
        default_factory=list,
        description="comma-separated base64 keys still accepted for reading, during a rotation",
        validation_alias=AliasChoices("KEYWAY_ENCRYPTION_KEYS_OLD", "encryption_keys_old"),
    )
    egress_allowlist: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
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

"""The gateway's settings: the shared ones plus its port, public URL, pinned keys and outbox relay."""

from __future__ import annotations

import ipaddress

from pydantic import AliasChoices, Field, SecretStr, field_validator

from keyway_shared.settings import BaseServiceSettings, parse_cidrs
from keyway_shared.store.environments import PublicKeyConnect

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseServiceSettings):
    port: int = Field(
        default=3003,
        description="the gateway's port (Nango's default)",
        validation_alias=AliasChoices("KEYWAY_GATEWAY_PORT", "port"),
    )
    admin_port: int | None = Field(
        default=None,
        description="when set, the secret-key API, /openapi.json and the dashboard answer only here; "
        "the gateway port keeps the public routes (connect, callbacks, WebSocket)",
        validation_alias=AliasChoices("KEYWAY_ADMIN_PORT", "admin_port"),
    )
    public_url: str = Field(
        default="http://127.0.0.1:3003",
        description=(
            "where browsers and providers reach the gateway; the default callback is its /oauth/callback, and "
            "MCP authorization servers fetch its client ID metadata documents there (https, or a loopback host)"
        ),
        validation_alias=AliasChoices("KEYWAY_PUBLIC_URL", "public_url"),
    )
    secret_key_dev: str | None = Field(
        default=None,
        description="pin the dev environment's secret key (a UUID v4), like Nango's self-hosted variables",
        validation_alias=AliasChoices("KEYWAY_SECRET_KEY_DEV"),
    )
    public_key_dev: str | None = Field(
        default=None,
        description="pin the dev environment's public key (a UUID v4), like Nango's self-hosted variables",
        validation_alias=AliasChoices("KEYWAY_PUBLIC_KEY_DEV"),
    )
    secret_key_prod: str | None = Field(
        default=None,
        description="pin the prod environment's secret key (a UUID v4), like Nango's self-hosted variables",
        validation_alias=AliasChoices("KEYWAY_SECRET_KEY_PROD"),
    )
    public_key_prod: str | None = Field(
        default=None,
        description="pin the prod environment's public key (a UUID v4), like Nango's self-hosted variables",
        validation_alias=AliasChoices("KEYWAY_PUBLIC_KEY_PROD"),
    )
    public_key_connect: PublicKeyConnect = Field(
        default="refused",
        description="what the public key may do in the connect routes of an environment created at this start "
        "(then its own public_key_connect, PATCH /environment or the dashboard, decides): refused (connect "
        "sessions only, Nango's deprecated_authentication), hmac (with a valid hmac parameter; a random HMAC "
        "key is made) or allowed (the 2024 SDKs' public-key protocol, anyone with the key may connect)",
        validation_alias=AliasChoices("KEYWAY_PUBLIC_KEY_CONNECT", "public_key_connect"),
    )
    outbox_sweep_seconds: float = Field(
        default=2.0,
        description="how often each replica looks for outbox rows nobody published (broker was down)",
        validation_alias=AliasChoices("KEYWAY_OUTBOX_SWEEP_SECONDS", "outbox_sweep_seconds"),
    )
    outbox_stale_seconds: float = Field(
        default=3.0,
        description="an outbox row older than this is fair game for any replica's relay",
        validation_alias=AliasChoices("KEYWAY_OUTBOX_STALE_SECONDS", "outbox_stale_seconds"),
    )
    provider_timeout_seconds: float = Field(
        default=15.0,
        description="how long a provider's token endpoint may take before the attempt fails",
        validation_alias=AliasChoices("KEYWAY_PROVIDER_TIMEOUT_SECONDS", "provider_timeout_seconds"),
    )
    rate_limit_per_minute: int = Field(
        default=2400,
        ge=0,
        description="secret-key requests per minute per environment on each replica (Nango's default); 0 disables",
        validation_alias=AliasChoices("KEYWAY_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute"),
    )
    public_rate_limit_per_minute: int = Field(
        default=2400,
        ge=0,
        description="public-key and connect-session requests per minute per environment on each replica, "
        "a budget apart from the secret key's so browsers never use up the backend's; 0 disables",
        validation_alias=AliasChoices("KEYWAY_PUBLIC_RATE_LIMIT_PER_MINUTE", "public_rate_limit_per_minute"),
    )
    client_rate_limit_per_minute: int = Field(
        default=300,
        ge=0,
        description="requests per minute per client address (IPv6: per /64) on each replica to the browser "
        "routes (connect flows, callbacks, connect sessions and links, the WebSocket); 0 disables",
        validation_alias=AliasChoices("KEYWAY_CLIENT_RATE_LIMIT_PER_MINUTE", "client_rate_limit_per_minute"),
    )
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description="comma-separated CIDRs of the proxies in front of the gateway (the Ingress controller, a "
        "load balancer) whose X-Forwarded-For names the client; empty: the header is ignored and the "
        "socket's peer is the client (per-client limits, dashboard lockout)",
        validation_alias=AliasChoices("KEYWAY_TRUSTED_PROXIES", "trusted_proxies"),
    )
    auth_failed_events_per_client_per_minute: int = Field(
        default=10,
        ge=0,
        description="failed connect attempts from one client address announced (auth.failed, its webhook "
        "and activity entry) per minute per environment on each replica; past it the attempt is answered "
        "but not announced; 0: no limit",
        validation_alias=AliasChoices(
            "KEYWAY_AUTH_FAILED_EVENTS_PER_CLIENT_PER_MINUTE", "auth_failed_events_per_client_per_minute"
        ),
    )
    auth_failed_events_per_minute: int = Field(
        default=600,
        ge=0,
        description="failed connect attempts announced (auth.failed) per minute per environment on each "
        "replica, from all clients together; 0: no limit",
        validation_alias=AliasChoices("KEYWAY_AUTH_FAILED_EVENTS_PER_MINUTE", "auth_failed_events_per_minute"),
    )
    environment_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how long a replica may serve an environment from memory if a change broadcast is lost",
        validation_alias=AliasChoices("KEYWAY_ENVIRONMENT_CACHE_SECONDS", "environment_cache_seconds"),
    )
    connection_cache_entries: int = Field(
        default=10_000,
        ge=0,
        description="connections each replica keeps decrypted in memory for GET /connection, kept coherent "
        "with every acknowledged write through the event stream (0: every read goes to the database)",
        validation_alias=AliasChoices("KEYWAY_CONNECTION_CACHE_ENTRIES", "connection_cache_entries"),
    )
    connection_cache_seconds: float = Field(
        default=5.0,
        gt=0,
        description="the longest a cached connection is served unchecked: a write that bypasses the event "
        "stream but sets updated_at (the gateways' and the refresher's do) is seen within it, one that leaves "
        "no trace (a raw database edit, a keyway import) within 12 times it",
        validation_alias=AliasChoices("KEYWAY_CONNECTION_CACHE_SECONDS", "connection_cache_seconds"),
    )
    request_deadline_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how long one request may wait on MongoDB and RabbitMQ (counted again after each call to a "
        "provider) before it answers 503 with Retry-After, instead of hanging while the database is away; keep it "
        "well under your clients' own timeout",
        validation_alias=AliasChoices("KEYWAY_REQUEST_DEADLINE_SECONDS", "request_deadline_seconds"),
    )
    database_concurrency: int = Field(
        default=64,
        ge=0,
        description="backend API requests each replica lets work on MongoDB at once; past it a request answers "
        "503 with Retry-After at once instead of queueing behind a database that does not keep up (the proxy "
        "and the browser's routes take no slot, nor a GET /connection served from memory); 0: no cap",
        validation_alias=AliasChoices("KEYWAY_DATABASE_CONCURRENCY", "database_concurrency"),
    )
    retry_after_seconds: int = Field(
        default=2,
        ge=1,
        description="the Retry-After of a 503 (database or broker unavailable, or every database slot taken)",
        validation_alias=AliasChoices("KEYWAY_RETRY_AFTER_SECONDS", "retry_after_seconds"),
    )
    reuse_port: bool = Field(
        default=False,
        description="SO_REUSEPORT: several gateway processes listen on the same port (and admin port) and the "
        "kernel spreads new connections over them; make up REPLICAS=n sets it on every gateway replica",
        validation_alias=AliasChoices("KEYWAY_REUSE_PORT", "reuse_port"),
    )
    proxy_read_timeout_seconds: float = Field(
        default=60.0,
        description="how long /proxy waits for an upstream's response headers, and then between two body chunks",
        validation_alias=AliasChoices("KEYWAY_PROXY_READ_TIMEOUT_SECONDS", "proxy_read_timeout_seconds"),
    )
    proxy_deadline_seconds: float = Field(
        default=120.0,
        description="the most one /proxy call may take until the upstream answers, retries and waits included",
        validation_alias=AliasChoices("KEYWAY_PROXY_DEADLINE_SECONDS", "proxy_deadline_seconds"),
    )
    http_idle_timeout_seconds: float = Field(
        default=75.0,
        gt=0,
        description="how long a connection may go without a complete request head, counted from its opening or "
        "from the previous answer: idle keep-alive connections and clients sending their headers slowly "
        "(slowloris) are closed after it; keep it above the idle timeout of a proxy in front (60 s for nginx)",
        validation_alias=AliasChoices("KEYWAY_HTTP_IDLE_TIMEOUT_SECONDS", "http_idle_timeout_seconds"),
    )
    http_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long a JSON request body may take to arrive once its head has (408 after it)",
        validation_alias=AliasChoices("KEYWAY_HTTP_BODY_TIMEOUT_SECONDS", "http_body_timeout_seconds"),
    )
    websockets_per_client: int = Field(
        default=50,
        ge=0,
        description="frontend SDK WebSockets one client address (IPv6: its /64) may hold open on each replica "
        "(429 past it; behind a proxy set KEYWAY_TRUSTED_PROXIES, or every client counts as the proxy); 0: no cap",
        validation_alias=AliasChoices("KEYWAY_WEBSOCKETS_PER_CLIENT", "websockets_per_client"),
    )
    websocket_allowed_origins: list[str] = Field(
        default_factory=list,
        description="comma-separated origins (https://app.example.com) whose pages may open the frontend SDK's "
        "WebSocket (403 for a browser on another page) and frame the Connect UI (/connect-ui/); empty: any "
        "origin, as Nango allows",
        validation_alias=AliasChoices("KEYWAY_WEBSOCKET_ALLOWED_ORIGINS", "websocket_allowed_origins"),
    )

    admin_user: str | None = Field(
        default=None,
        description="the dashboard's admin account; the dashboard is off until it and the hash are set",
        validation_alias=AliasChoices("KEYWAY_ADMIN_USER", "admin_user"),
    )
    admin_password_hash: SecretStr | None = Field(
        default=None,
        description="the admin's password hash, from `python -m auth_gateway.dashboard.hash_password`",
        validation_alias=AliasChoices("KEYWAY_ADMIN_PASSWORD_HASH", "admin_password_hash"),
    )
    dashboard_session_hours: float = Field(
        default=12.0,
        gt=0,
        description="how long a dashboard sign-in lasts",
        validation_alias=AliasChoices("KEYWAY_DASHBOARD_SESSION_HOURS", "dashboard_session_hours"),
    )
    dashboard_lockout_failures: int = Field(
        default=5,
        ge=1,
        description="failed sign-ins from one client address before that address is locked out; past as "
        "many for one user name, each further try from an address that has failed waits longer (1 s, "
        "doubling, up to a minute), while an address without failures is always heard",
        validation_alias=AliasChoices("KEYWAY_DASHBOARD_LOCKOUT_FAILURES", "dashboard_lockout_failures"),
    )
    dashboard_lockout_minutes: float = Field(
        default=15.0,
        gt=0,
        description="how long a dashboard lockout lasts, and the window failures are counted in",
        validation_alias=AliasChoices("KEYWAY_DASHBOARD_LOCKOUT_MINUTES", "dashboard_lockout_minutes"),
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: object) -> object:
        return parse_cidrs(value)

    @field_validator("websocket_allowed_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        items = value.split(",") if isinstance(value, str) else list(value or [])  # type: ignore[call-overload]
        return [str(item).strip().rstrip("/").lower() for item in items if str(item).strip()]

    @property
    def dashboard_enabled(self) -> bool:
        return bool(self.admin_user and self.admin_password_hash and self.admin_password_hash.get_secret_value())

    @property
    def callback_url(self) -> str:
        return self.public_url.rstrip("/") + "/oauth/callback"

    def pinned_keys(self, environment: str) -> tuple[str | None, str | None]:
        """(public key, secret key) pinned by settings for an environment, if any."""
        if environment == "dev":
            return self.public_key_dev, self.secret_key_dev
        if environment == "prod":
            return self.public_key_prod, self.secret_key_prod
        return None, None

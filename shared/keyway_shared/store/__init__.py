"""The MongoDB store: the client, the indexes, and one small repository per collection."""

from .client import Database, open_client
from .connections import Connection, ConnectionStore, credentials_ad
from .environments import DEFAULT_ENVIRONMENTS, Environment, EnvironmentStore, WebhookSettings, hash_secret_key
from .idempotency import MongoIdempotencyGuard
from .indexes import COLLECTION_INDEXES, ensure_indexes
from .integrations import DuplicateIntegrationError, Integration, IntegrationStore
from .outbox import OutboxRow, OutboxStore
from .refresh_state import EPOCH, RefreshState, RefreshStateStore
from .request_outcomes import ClaimResult, KeyClaim, RequestOutcomeStore, StoredAnswer
from .webhook_keys import WebhookKeyStore

__all__ = [
    "COLLECTION_INDEXES",
    "DEFAULT_ENVIRONMENTS",
    "EPOCH",
    "ClaimResult",
    "Connection",
    "ConnectionStore",
    "Database",
    "DuplicateIntegrationError",
    "Environment",
    "EnvironmentStore",
    "Integration",
    "IntegrationStore",
    "KeyClaim",
    "MongoIdempotencyGuard",
    "OutboxRow",
    "OutboxStore",
    "RefreshState",
    "RefreshStateStore",
    "RequestOutcomeStore",
    "StoredAnswer",
    "WebhookKeyStore",
    "WebhookSettings",
    "credentials_ad",
    "ensure_indexes",
    "hash_secret_key",
    "open_client",
]

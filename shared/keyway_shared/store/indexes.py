"""The indexes every collection needs, created at start-up (idempotent: creating twice is a no-op).

Every field a query filters or sorts on has an index here; on the embedded server an unindexed
query is a scan in Python, and on a real MongoDB it is a scan anyway.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import OperationFailure

from .client import Database

__all__ = ["COLLECTION_INDEXES", "RETIRED_INDEXES", "ensure_indexes"]

COLLECTION_INDEXES: dict[str, list[IndexModel]] = {
    "environments": [
        IndexModel([("public_key", ASCENDING)], unique=True, name="public_key_unique"),
        IndexModel([("secret_key_hash", ASCENDING)], unique=True, name="secret_key_hash_unique"),
        IndexModel([("pending_secret_key_hash", ASCENDING)], sparse=True, name="pending_secret_key_hash"),
        IndexModel([("pending_public_key", ASCENDING)], sparse=True, name="pending_public_key"),
    ],
    "integrations": [
        IndexModel([("environment", ASCENDING), ("unique_key", ASCENDING)], unique=True, name="env_unique_key"),
    ],
    "connections": [
        IndexModel(
            [("environment", ASCENDING), ("provider_config_key", ASCENDING), ("connection_id", ASCENDING)],
            unique=True,
            name="env_integration_connection",
        ),
        IndexModel([("environment", ASCENDING), ("created_at", DESCENDING)], name="env_created"),
        IndexModel([("environment", ASCENDING), ("connection_id", ASCENDING)], name="env_connection_id"),
        IndexModel([("id", ASCENDING)], unique=True, name="numeric_id"),
        # Nango's current list filters (store/connection_labels.py): one field beside the environment,
        # then the list's order, newest first with id breaking ties. ``tag_index`` is multikey.
        IndexModel(
            [("environment", ASCENDING), ("end_user.id", ASCENDING), ("created_at", DESCENDING), ("id", DESCENDING)],
            name="env_end_user",
        ),
        IndexModel(
            [
                ("environment", ASCENDING),
                ("end_user.organization.id", ASCENDING),
                ("created_at", DESCENDING),
                ("id", DESCENDING),
            ],
            name="env_end_user_organization",
        ),
        IndexModel(
            [("environment", ASCENDING), ("tag_index", ASCENDING), ("created_at", DESCENDING), ("id", DESCENDING)],
            name="env_tags",
        ),
        IndexModel([("refresh_due_at", ASCENDING)], name="refresh_due", sparse=True),
        # Each gateway asks "what changed since T" a few times per KEYWAY_CONNECTION_CACHE_SECONDS
        # (auth_gateway/connection_cache.py): a range read, however many connections there are.
        IndexModel([("updated_at", ASCENDING)], name="updated"),
        # `keyway keys rotate` pages through the connections still under an old key, by _id
        IndexModel([("credentials_key_id", ASCENDING), ("_id", ASCENDING)], name="credentials_key_id"),
    ],
    "counters": [],
    # The sweep reads ``created_at <= T`` (and a lease filter) over ``created``: rows live for
    # milliseconds, so the range holds few. Each further index costs every event two entries, on
    # insert and delete.
    "outbox": [
        IndexModel([("created_at", ASCENDING)], name="created"),
    ],
    "processed_events": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl"),
    ],
    # The list filters ride two indexes (keyway_shared.activity.query): ``keys`` holds an operation's
    # facets (environment, type, integration, connection, message words) and is multikey. The range
    # field is always the last one: the embedded server answers a range followed by further index
    # fields wrongly (measured: docs/activity-log.md).
    "activity_operations": [
        IndexModel([("keys", ASCENDING), ("created_at", DESCENDING)], name="keys_time"),
        IndexModel(
            [("environment", ASCENDING), ("state", ASCENDING), ("created_at", DESCENDING)], name="env_state_time"
        ),
        IndexModel([("state", ASCENDING), ("timeout_at", ASCENDING)], name="state_timeout"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl"),
    ],
    "activity_messages": [
        IndexModel([("operation_id", ASCENDING), ("created_at", ASCENDING)], name="operation_time"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl"),
    ],
    "webhook_deliveries": [
        # Listing and "failed since T"; a delivery's or an event's attempts are ranges of _id.
        IndexModel([("environment", ASCENDING), ("created_at", DESCENDING)], name="env_time"),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl"),
    ],
    "webhook_attempt_claims": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl"),
    ],
    "webhook_endpoints": [
        IndexModel([("environment", ASCENDING)], name="environment"),
    ],
    # Idempotency-Key outcomes (request_outcomes.py): read by _id only; gone 24 h after their answer.
    "request_outcomes": [
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="ttl"),
    ],
}


# Indexes earlier releases created and no query needs any more: dropped at start-up, since every
# index costs each write its entries.
RETIRED_INDEXES: dict[str, tuple[str, ...]] = {
    "outbox": ("lease",),
}
_NOT_THERE = (26, 27)  # NamespaceNotFound (no collection yet), IndexNotFound


async def ensure_indexes(db: Database, collections: list[str] | None = None) -> None:
    for name in collections or list(COLLECTION_INDEXES):
        models = COLLECTION_INDEXES[name]
        if models:
            await db[name].create_indexes(models)
        for retired in RETIRED_INDEXES.get(name, ()):
            try:
                await db[name].drop_index(retired)
            except OperationFailure as exc:
                # Not there: a new database, or another replica dropped it first.
                if exc.code not in _NOT_THERE:
                    raise

"""Connections: one customer's authorized account at one integration, credentials encrypted.

The credentials are one AES-GCM ciphertext bound (as associated data) to the connection's identity,
so a ciphertext copied onto another connection fails to decrypt instead of leaking across.
A connection and the event announcing it are written in one transaction with the outbox.

A connection made through a connect session keeps that session's end user (``end_user``: id, email,
display name, organization); a later session of another end user may not write over it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, ExecutionTimeout, PyMongoError

from ..backoff import Backoff
from ..cipher import CredentialCipher
from ..credentials.shapes import Credentials, parse_credentials
from ..deadline import remaining, spawn_until
from ..events import CloudEvent
from ..group_commit import GroupCommit
from ..refresh.policy import DEFAULT_MARGIN, refresh_due_at
from .client import Database, db_now
from .outbox import OutboxRow, OutboxStore

__all__ = ["Connection", "ConnectionOwnedError", "ConnectionStamp", "ConnectionStore", "credentials_ad"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRANSACTION_ATTEMPTS = 5  # outside a request, which has its deadline to stop at instead
_MAX_BATCH = 64  # writes sharing one transaction at most
_LEAST_TRY = 0.05  # seconds a try needs at least: none is started with less of the deadline left
T = TypeVar("T")


def _conflict_backoff() -> Backoff:
    # Writers that collided wait apart (jittered) and longer each time: at once again, they collide again.
    return Backoff(first=0.02, cap=1.0)


async def _backed_off(backoff: Backoff, attempt: int) -> bool:
    """Sleep before another try; False when none is left: in a request, when its deadline
    (``keyway_shared.deadline``) is too near for the sleep and a try; elsewhere after a few tries."""
    delay = backoff.next()
    left = remaining(math.inf)
    if math.isinf(left):
        if attempt >= _TRANSACTION_ATTEMPTS - 1:
            return False
    elif left <= delay + _LEAST_TRY:
        return False
    await asyncio.sleep(delay)
    return True


async def _retrying_conflicts(transaction: Callable[[], Awaitable[T]], *, duplicates_too: bool = False) -> T:
    """Run a whole transaction again when the server says it did not apply and may go through on
    another try (``TransientTransactionError``: a write conflict, a connection lost mid-way), after
    a capped, jittered backoff; the last error is raised when no try is left (a 503 in a request).

    ``duplicates_too``: a duplicate key means a concurrent first insert won; go round again at once.
    """
    backoff = _conflict_backoff()
    attempt = 0
    while True:
        try:
            return await transaction()
        except DuplicateKeyError:
            if not duplicates_too or attempt >= _TRANSACTION_ATTEMPTS - 1:  # a race lost this often: give up
                raise
        except PyMongoError as exc:
            if not exc.has_error_label("TransientTransactionError") or not await _backed_off(backoff, attempt):
                raise
        attempt += 1


async def _commit(session: AsyncClientSession) -> None:
    """Commit, and commit again while the server's answer was lost (a commit is safe to repeat), so
    that a write's outcome is known whenever the database answers again before the deadline."""
    backoff = _conflict_backoff()
    attempt = 0
    while True:
        try:
            await session.commit_transaction()
            return
        except PyMongoError as exc:
            if not exc.has_error_label("UnknownTransactionCommitResult") or not await _backed_off(backoff, attempt):
                raise
        attempt += 1


class ConnectionStamp(NamedTuple):
    """Which connection changed, and the ``updated_at`` its latest write set."""

    key: tuple[str, str, str]  # environment, provider_config_key, connection_id
    updated_at: datetime


_STAMP_FIELDS = {"_id": 0, "environment": 1, "provider_config_key": 1, "connection_id": 1, "updated_at": 1}


class ConnectionOwnedError(Exception):
    """The connection belongs to another end user than the one a connect session writes for."""


def credentials_ad(environment: str, provider_config_key: str, connection_id: str) -> bytes:
    return f"connection:{environment}:{provider_config_key}:{connection_id}".encode()


def _check_owner(existing: dict[str, Any], end_user: dict[str, Any] | None) -> None:
    owner = (existing.get("end_user") or {}).get("id")
    if owner is not None and owner != (end_user or {}).get("id"):
        raise ConnectionOwnedError("the connection belongs to another end user")


# What a write reads of the connection it replaces: its identity, and the labels it may leave as they are.
_KEPT_ON_WRITE = {"id": 1, "created_at": 1, "end_user": 1, "tags": 1, "webhook_url_override": 1}


def _keep_stored_labels(connection: Connection, existing: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """What the write does not set stays as stored: the connection (and its event) say so."""
    if "end_user" not in fields:
        connection.end_user = existing.get("end_user")
    if "tags" not in fields:
        connection.tags = existing.get("tags") or {}
    if "webhook_url_override" not in fields:
        connection.webhook_url_override = existing.get("webhook_url_override")


def _key_of(connection: Connection) -> dict[str, str]:
    return {
        "environment": connection.environment,
        "provider_config_key": connection.provider_config_key,
        "connection_id": connection.connection_id,
    }


@dataclass(kw_only=True)
class Connection:
    environment: str
    provider_config_key: str
    connection_id: str
    provider: str
    auth_mode: str  # as stored: a mode of the catalog, or what a migration brought
    credentials: Credentials  # stored as ``credentials.dump()``, encrypted
    connection_config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    credentials_expires_at: datetime | None = None
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_fetched_at: datetime | None = None
    refresh_due_at: datetime | None = None
    end_user: dict[str, Any] | None = None  # the connect session's end user it belongs to, if any
    tags: dict[str, str] = field(default_factory=dict)  # Nango's connection tags (store/connection_labels.py)
    webhook_url_override: str | None = None  # its webhooks go here instead of the environment's URLs
    refresh_failed: bool = False  # the last refresh failed (read only here: the refresher writes it)
    # Answers encoded from this very object by a reader that shares it (the gateway's connection
    # cache serves one object to every read until an event drops it), by the answer's name. Never
    # stored, never compared, not copied by ``dataclasses.replace``: a changed connection is a new
    # object, so what is kept here can never describe another version of it.
    encoded: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def event_identity(self) -> dict[str, Any]:
        """The fields every ``connection.*`` and ``token.*`` event names its connection by, and who it
        belongs to (its end user, its tags, where its webhooks go) when it says."""
        identity: dict[str, Any] = {
            "connection_id": self.connection_id,
            "provider_config_key": self.provider_config_key,
            "provider": self.provider,
            "auth_mode": self.auth_mode,
        }
        if self.end_user:
            identity["end_user"] = self.end_user
        if self.tags:
            identity["tags"] = dict(self.tags)
        if self.webhook_url_override:
            identity["webhook_url_override"] = self.webhook_url_override
        return identity


@dataclass(kw_only=True, eq=False)
class _Write:
    """One writer's part of a batch (``ConnectionStore.save_with_event``)."""

    connection: Connection
    make_event: Callable[[bool], CloudEvent[Any]]
    fields: dict[str, Any]
    for_session: bool
    now: datetime
    until: float  # time.monotonic() of the writer's deadline (inf: none)

    @property
    def slot(self) -> tuple[str, str, str]:
        c = self.connection
        return (c.environment, c.provider_config_key, c.connection_id)


# A writer's answer: what the write replaced (None: it created the connection), its outbox row and
# the id a creation took; or the refusal that is this writer's alone.
_Outcome = tuple[dict[str, Any] | None, OutboxRow, int] | ConnectionOwnedError | None


class ConnectionStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: Database, cipher: CredentialCipher) -> None:
        self._client = client
        self._db = db
        self._col = db["connections"]
        self._counters = db["counters"]
        self._outbox = OutboxStore(db)
        self._cipher = cipher
        self._writes: GroupCommit[_Write, _Outcome] = GroupCommit(self._save_batch, max_size=_MAX_BATCH)

    def from_doc(self, doc: dict[str, Any]) -> Connection:
        ad = credentials_ad(doc["environment"], doc["provider_config_key"], doc["connection_id"])
        return Connection(
            id=doc.get("id"),
            environment=doc["environment"],
            provider_config_key=doc["provider_config_key"],
            connection_id=doc["connection_id"],
            provider=doc["provider"],
            auth_mode=doc["auth_mode"],
            credentials=parse_credentials(self._cipher.decrypt_json(doc["credentials_enc"], associated_data=ad)),
            connection_config=doc.get("connection_config") or {},
            metadata=doc.get("metadata"),
            credentials_expires_at=doc.get("credentials_expires_at"),
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
            last_fetched_at=doc.get("last_fetched_at"),
            refresh_due_at=doc.get("refresh_due_at"),
            end_user=doc.get("end_user"),
            tags=doc.get("tags") or {},
            webhook_url_override=doc.get("webhook_url_override"),
            refresh_failed=bool(doc.get("refresh_failed")),
        )

    def _write_fields(self, connection: Connection, *, now: datetime, refresh_margin: timedelta) -> dict[str, Any]:
        """The fields a (re-)authorization sets: credentials, their key id, a fresh refresh schedule."""
        ad = credentials_ad(connection.environment, connection.provider_config_key, connection.connection_id)
        fields: dict[str, Any] = {
            "provider": connection.provider,
            "auth_mode": connection.auth_mode,
            "credentials_enc": self._cipher.encrypt_json(connection.credentials.dump(), associated_data=ad),
            "credentials_key_id": self._cipher.current_key_id,
            "credentials_expires_at": connection.credentials_expires_at,
            "credentials_obtained_at": now,  # a refresh token's idle time counts from here (keep-alive)
            "connection_config": connection.connection_config,
            "updated_at": now,
            # New credentials: a fresh schedule and a clean refresh record (a reconnect heals an
            # exhausted connection). The lease is left alone: a refresh holding it will lose its
            # compare-and-swap against these credentials.
            "refresh_due_at": refresh_due_at(connection.credentials_expires_at, issued_at=now, margin=refresh_margin)
            if connection.credentials_expires_at is not None and connection.credentials.refreshable
            else None,
            "refresh_failed": False,
            "refresh_error": None,
            "refresh_failed_days": 0,
            "refresh_last_failed_day": None,
            "refresh_exhausted": False,
            "refresh_attempt": 0,
        }
        if connection.metadata is not None:
            fields["metadata"] = connection.metadata
        return fields

    async def _next_ids(self, count: int) -> range:
        """``count`` unused connection ids in one round trip (a batch of writes shares one)."""
        # Concurrent first upserts of the counter can collide (one gets a duplicate key, or, on the
        # embedded server, no document back); the counter exists after the first, so retry.
        for _ in range(5):
            try:
                doc = await self._counters.find_one_and_update(
                    {"_id": "connections"},
                    {"$inc": {"value": count}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            if doc is not None:
                last = int(doc["value"])
                return range(last - count + 1, last + 1)
        raise RuntimeError("could not allocate a connection id")

    async def _next_id(self) -> int:
        return (await self._next_ids(1))[0]

    async def save_with_event(
        self,
        connection: Connection,
        make_event: Callable[[bool], CloudEvent[Any]],
        *,
        refresh_margin: timedelta = DEFAULT_MARGIN,
        for_session: bool = False,
        labels: Mapping[str, Any] | None = None,
    ) -> tuple[Connection, bool, OutboxRow]:
        """Insert or update the connection and add its event to the outbox, atomically.

        ``make_event(created)`` builds the event once we know whether this was a first authorization;
        by then ``connection`` also holds what the write leaves as stored (its end user, tags and
        webhook URL override), so the event tells who the connection belongs to.
        ``for_session``: a connect session writes for ``connection.end_user`` (None: an end user it
        did not name); the connection then belongs to them, and one that belongs to another end
        user is left as it is (``ConnectionOwnedError``).
        ``labels``: further fields the session sets (its tags with their index, its webhook URL override).

        Concurrent writers share one transaction (group commit, ``_save_batch``): each still gets its
        own connection, its own outbox row in the same transaction, and its own answer.
        """
        now = db_now()
        fields = self._write_fields(connection, now=now, refresh_margin=refresh_margin)
        if for_session and connection.end_user is not None:
            fields["end_user"] = connection.end_user
        fields.update(labels or {})
        left = remaining(math.inf)
        write = _Write(
            connection=connection,
            make_event=make_event,
            fields=fields,
            for_session=for_session,
            now=now,
            until=time.monotonic() + left,
        )
        try:
            # The batch runs under the latest deadline of its writers; each waits only up to its own.
            outcome = await asyncio.wait_for(self._writes.submit(write), timeout=None if math.isinf(left) else left)
        except TimeoutError:
            raise ExecutionTimeout("the write did not commit before the request's deadline", code=50) from None
        if outcome is None:  # cannot be: every write of a batch gets its answer
            raise RuntimeError("a batched connection write got no answer")
        if isinstance(outcome, ConnectionOwnedError):
            raise outcome
        existing, row, new_id = outcome
        connection.id = new_id if existing is None else existing["id"]
        connection.created_at = now if existing is None else existing.get("created_at")
        connection.updated_at = now
        return connection, existing is None, row

    async def _save_batch(self, writes: list[_Write]) -> list[_Outcome]:
        """Concurrent writes in one transaction: one read of what they replace, one write of each
        kind, one outbox insert and one commit, instead of all of them per write.

        A connection written twice in one batch: its later writes go in the batches after (in
        order). A write a session may not make (``ConnectionOwnedError``) is that writer's answer
        and the others go on; whatever fails the transaction itself is every writer's answer.
        """
        # Not under the deadline (and the driver's timeout) of whichever request started the batch:
        # under the latest of its writers', the same for every writer of it.
        until = max(write.until for write in writes)
        return await spawn_until(self._save_batch_now(writes), until, name="connection-writes")

    async def _save_batch_now(self, writes: list[_Write]) -> list[_Outcome]:
        batch: list[_Write] = []
        later: list[_Write] = []
        seen: set[tuple[str, str, str]] = set()
        for write in writes:
            slot = write.slot
            (later if slot in seen else batch).append(write)
            seen.add(slot)
        ids = await self._next_ids(len(batch))  # unused numbers (updates, retries) are harmless
        # A duplicate key: a concurrent first authorization won, go round again as an update.
        outcomes = await _retrying_conflicts(lambda: self._save_batch_once(batch, ids), duplicates_too=True)
        answers: dict[int, _Outcome] = {id(w): o for w, o in zip(batch, outcomes, strict=True)}
        if later:
            for write, outcome in zip(later, await self._save_batch_now(later), strict=True):
                answers[id(write)] = outcome
        return [answers[id(write)] for write in writes]

    async def _save_batch_once(self, batch: list[_Write], ids: range) -> list[_Outcome]:
        outcomes: list[_Outcome] = []  # None until the write's outbox row exists
        async with self._client.start_session() as session, await session.start_transaction():
            existing = await self._existing(batch, session)
            inserts: list[dict[str, Any]] = []
            updates: list[UpdateOne] = []
            events: list[CloudEvent[Any]] = []
            written: list[tuple[int, dict[str, Any] | None, int]] = []
            for index, (write, new_id) in enumerate(zip(batch, ids, strict=True)):
                connection, key = write.connection, _key_of(write.connection)
                found = existing.get(write.slot)
                if write.for_session and found is not None:
                    try:
                        _check_owner(found, connection.end_user)
                    except ConnectionOwnedError as refused:
                        outcomes.append(refused)
                        continue
                if found is None:
                    inserts.append(
                        key
                        | write.fields
                        | {
                            "id": new_id,
                            "created_at": write.now,
                            "metadata": connection.metadata,
                            "refresh_lease_until": _EPOCH,
                        }
                    )
                else:
                    _keep_stored_labels(connection, found, write.fields)
                    updates.append(UpdateOne(key, {"$set": write.fields}))
                events.append(write.make_event(found is None))
                written.append((index, found, new_id))
                outcomes.append(None)  # set below, once its outbox row exists
            if inserts:
                await self._col.insert_many(inserts, ordered=True, session=session)
            if updates:
                await self._col.bulk_write(updates, ordered=True, session=session)
            rows = await self._outbox.add_many(events, session=session)
            await _commit(session)
        for (index, found, new_id), row in zip(written, rows, strict=True):
            outcomes[index] = (found, row, new_id)
        return outcomes

    async def _existing(
        self, batch: list[_Write], session: AsyncClientSession
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """What the batch's writes replace, one read per integration (the key's index serves each)."""
        by_integration: dict[tuple[str, str], list[str]] = {}
        for write in batch:
            environment, provider_config_key, connection_id = write.slot
            by_integration.setdefault((environment, provider_config_key), []).append(connection_id)
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        projection = _KEPT_ON_WRITE | {"connection_id": 1}
        for (environment, provider_config_key), connection_ids in by_integration.items():
            base = {"environment": environment, "provider_config_key": provider_config_key}
            query = base | {"connection_id": connection_ids[0] if len(connection_ids) == 1 else {"$in": connection_ids}}
            async for doc in self._col.find(query, projection, session=session):
                found[(environment, provider_config_key, doc["connection_id"])] = doc
        return found

    async def put_imported(self, connection: Connection, *, refresh_margin: timedelta = DEFAULT_MARGIN) -> bool:
        """Store a connection brought from another system, without an event; True when it was new.

        A migration is not a new authorization: the app's backend gets no webhook for it. The
        connection keeps the dates it had there (``created_at`` orders the list as before).
        """
        key = _key_of(connection)
        now = db_now()
        fields = self._write_fields(connection, now=now, refresh_margin=refresh_margin)
        fields["updated_at"] = connection.updated_at or now
        fields["credentials_obtained_at"] = fields["updated_at"]  # its refresh token is no younger
        if connection.last_fetched_at is not None:
            fields["last_fetched_at"] = connection.last_fetched_at
        result = await self._col.update_one(key, {"$set": fields | {"metadata": connection.metadata}})
        if result.matched_count == 1:
            return False
        extra = {
            "created_at": connection.created_at or now,
            "metadata": connection.metadata,
            "refresh_lease_until": _EPOCH,
        }
        try:
            await self._col.insert_one(key | fields | extra | {"id": await self._next_id()})
        except DuplicateKeyError:  # written meanwhile by someone else: theirs is newer
            return False
        return True

    async def summaries(
        self,
        environment: str,
        *,
        connection_id: str | None = None,
        provider_config_key: str | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Summaries (no credentials), newest first."""
        query: dict[str, Any] = {"environment": environment}
        if connection_id:
            query["connection_id"] = connection_id
        if provider_config_key:
            query["provider_config_key"] = provider_config_key
        projection = {
            "id": 1,
            "connection_id": 1,
            "provider_config_key": 1,
            "provider": 1,
            "created_at": 1,
            "metadata": 1,
        }
        cursor = self._col.find(query, projection).sort("created_at", -1).limit(limit)
        return [doc async for doc in cursor]

    async def delete_with_event(
        self,
        environment: str,
        provider_config_key: str,
        connection_id: str,
        make_event: Callable[[Connection], CloudEvent[Any]],
        *,
        also: Callable[[AsyncClientSession], Awaitable[None]] | None = None,
    ) -> tuple[Connection, OutboxRow] | None:
        """Delete the connection and add its event to the outbox, atomically; None when there is none.

        ``also`` writes in the same transaction (the Idempotency-Key that asked for the deletion).
        """
        key = {"environment": environment, "provider_config_key": provider_config_key, "connection_id": connection_id}

        async def delete_once() -> tuple[Connection, OutboxRow] | None:
            async with self._client.start_session() as session, await session.start_transaction():
                doc = await self._col.find_one_and_delete(key, session=session)
                if doc is None:
                    return None
                connection = self.from_doc(doc)
                row = await self._outbox.add(make_event(connection), session=session)
                if also is not None:
                    await also(session)
                await _commit(session)
            return connection, row

        return await _retrying_conflicts(delete_once)

    async def set_metadata_with_events(
        self,
        environment: str,
        provider_config_key: str,
        connection_ids: list[str],
        metadata: dict[str, Any],
        *,
        merge: bool,
        make_event: Callable[[Connection], CloudEvent[Any]],
    ) -> tuple[list[str], list[OutboxRow]]:
        """Replace (or shallow-merge) the metadata of several connections in one transaction.

        Returns the ids that do not exist (nothing is written then) and the outbox rows.
        """
        return await _retrying_conflicts(
            lambda: self._set_metadata_once(
                environment, provider_config_key, connection_ids, metadata, merge, make_event
            )
        )

    async def _set_metadata_once(
        self,
        environment: str,
        provider_config_key: str,
        connection_ids: list[str],
        metadata: dict[str, Any],
        merge: bool,
        make_event: Callable[[Connection], CloudEvent[Any]],
    ) -> tuple[list[str], list[OutboxRow]]:
        base = {"environment": environment, "provider_config_key": provider_config_key}
        rows: list[OutboxRow] = []
        async with self._client.start_session() as session, await session.start_transaction():
            docs = {
                doc["connection_id"]: doc
                async for doc in self._col.find(base | {"connection_id": {"$in": connection_ids}}, session=session)
            }
            missing = [cid for cid in connection_ids if cid not in docs]
            if missing:
                return missing, []
            now = db_now()
            for cid in connection_ids:
                doc = docs[cid]
                merged = {**(doc.get("metadata") or {}), **metadata} if merge else dict(metadata)
                await self._col.update_one(
                    base | {"connection_id": cid}, {"$set": {"metadata": merged, "updated_at": now}}, session=session
                )
                doc["metadata"] = merged
                rows.append(await self._outbox.add(make_event(self.from_doc(doc)), session=session))
            await _commit(session)
        return [], rows

    async def get(self, environment: str, provider_config_key: str, connection_id: str) -> Connection | None:
        doc = await self._col.find_one(
            {"environment": environment, "provider_config_key": provider_config_key, "connection_id": connection_id}
        )
        return self.from_doc(doc) if doc else None

    async def changed_since(self, since: datetime, *, limit: int) -> list[ConnectionStamp]:
        """The connections whose ``updated_at`` is ``since`` or later, with that stamp: one range read
        on the ``updated`` index, whose cost follows the writes, not how many connections there are.
        Every write of this store and of the refresher sets ``updated_at``; at most ``limit`` come back."""
        cursor = self._col.find({"updated_at": {"$gte": since}}, _STAMP_FIELDS).limit(limit)
        return [
            ConnectionStamp((doc["environment"], doc["provider_config_key"], doc["connection_id"]), doc["updated_at"])
            async for doc in cursor
        ]

    async def touch_fetched(self, keys: list[tuple[str, str, str]], at: datetime) -> None:
        """Record ``last_fetched_at`` for many connections in one round trip."""
        if not keys:
            return
        ops = [
            UpdateOne(
                {"environment": e, "provider_config_key": p, "connection_id": c}, {"$max": {"last_fetched_at": at}}
            )
            for e, p, c in keys
        ]
        await self._col.bulk_write(ops, ordered=False)

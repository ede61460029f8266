"""A consumer bound through a header filter gets only the events it wants, on the real RabbitMQ;
and the outbox rows carry what that filter reads.

The token-refresher's queue is the one that uses it: an API-key or Basic connection's events never
reach it, whichever way they are published (at once by the outbox relay, later by its sweep, or by
``EventPublisher``), and a queue declared by an earlier release, bound to the events directly, loses
that binding so nothing arrives twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from keyway_shared.auth_modes import AUTH_MODES
from keyway_shared.bus import (
    TOKEN_REFRESHER,
    ConsumerSpec,
    EventPublisher,
    declare_consumer,
    declare_topology,
    delete_consumer_queues,
    service_consumers,
)
from keyway_shared.bus.registry import REFRESHED_MODES
from keyway_shared.events import (
    AUTH_MODE_HEADER,
    AuthFailed,
    CloudEvent,
    ConnectionCreated,
    ConnectionDeleted,
    ErrorInfo,
    EventData,
    make_event,
)
from keyway_shared.outbox_relay import OutboxRelay
from keyway_shared.refresh.policy import NEVER_REFRESHED
from keyway_shared.service.broker import BrokerLink
from keyway_shared.store import Database, OutboxStore, ensure_indexes
from keyway_shared.store.indexes import RETIRED_INDEXES

pytestmark = pytest.mark.broker


def _event(connection_id: str, auth_mode: str, *, deleted: bool = False) -> CloudEvent[EventData]:
    fields = {"connection_id": connection_id, "provider_config_key": "p", "provider": "posthog"}
    data = (
        ConnectionDeleted(**fields, auth_mode=auth_mode)
        if deleted
        else ConnectionCreated(**fields, auth_mode=auth_mode)
    )
    kind = "connection.deleted" if deleted else "connection.created"
    return make_event(data, type=kind, source="/keyway/test", environment="dev")


@pytest.fixture
async def refresher_spec(amqp: AbstractRobustConnection, namespace: str) -> AsyncIterator[ConsumerSpec]:
    spec = service_consumers(namespace)[TOKEN_REFRESHER]
    yield spec
    channel = await amqp.channel()
    try:
        await delete_consumer_queues(channel, spec)
    finally:
        await channel.close()


async def _ids_in(connection: AbstractRobustConnection, queue: str) -> list[str]:
    """The connection ids of the messages waiting in ``queue``, taken out of it."""
    channel = await connection.channel()
    ids: list[str] = []
    try:
        source = await channel.get_queue(queue, ensure=True)
        while (message := await source.get(no_ack=True, fail=False)) is not None:
            ids.append(CloudEvent[ConnectionCreated].model_validate_json(message.body).data.connection_id)
    finally:
        await channel.close()
    return ids


def test_the_refresher_is_bound_on_every_mode_it_refreshes() -> None:
    assert set(REFRESHED_MODES) | NEVER_REFRESHED == set(AUTH_MODES)
    assert not set(REFRESHED_MODES) & NEVER_REFRESHED
    assert {"OAUTH2", "CUSTOM", "APP", "OAUTH2_CC"} <= set(REFRESHED_MODES)


def test_a_connection_event_names_its_mode_in_its_headers() -> None:
    assert _event("a", "API_KEY").header_fields()[AUTH_MODE_HEADER] == "API_KEY"
    # A failed connect whose mode was never known says nothing rather than something wrong.
    failed = AuthFailed(error=ErrorInfo(type="unknown_provider", description="no such integration"))
    other = make_event(failed, type="auth.failed", source="/keyway/test", environment="dev")
    assert AUTH_MODE_HEADER not in other.header_fields()


async def test_only_refreshed_modes_reach_the_refresher_queue(
    amqp: AbstractRobustConnection, namespace: str, refresher_spec: ConsumerSpec
) -> None:
    channel = await amqp.channel()
    await declare_topology(channel, namespace=namespace, queue_type="classic")
    await channel.close()
    publisher = EventPublisher(amqp, exchange_name=refresher_spec.exchange)
    try:
        for mode in ("API_KEY", "OAUTH2", "BASIC", "CUSTOM", "NONE", "OAUTH1", "TBA", "OAUTH2_CC"):
            await publisher.publish(_event(f"c-{mode}", mode))
        await publisher.publish(_event("gone-oauth", "OAUTH2", deleted=True))
        # Without the filter every event would be there; the activity log's queue still gets them all.
        activity = service_consumers(namespace)["activity-log"].queue
        assert len(await _ids_in(amqp, activity)) == 9
        assert sorted(await _ids_in(amqp, refresher_spec.queue)) == [
            "c-CUSTOM",
            "c-OAUTH2",
            "c-OAUTH2_CC",
            "gone-oauth",
        ]
    finally:
        await publisher.close()


async def test_a_queue_bound_directly_by_an_earlier_release_loses_that_binding(
    amqp: AbstractRobustConnection, namespace: str, refresher_spec: ConsumerSpec
) -> None:
    earlier = ConsumerSpec(
        service=refresher_spec.service,
        handler=refresher_spec.handler,
        bindings=refresher_spec.bindings,
        namespace=namespace,
    )
    assert earlier.queue == refresher_spec.queue
    assert earlier.header_filter is None
    channel = await amqp.channel()
    await declare_consumer(channel, earlier, queue_type="classic")
    await declare_consumer(channel, refresher_spec, queue_type="classic")
    await channel.close()
    publisher = EventPublisher(amqp, exchange_name=refresher_spec.exchange)
    try:
        await publisher.publish(_event("key", "API_KEY"))
        await publisher.publish(_event("oauth", "OAUTH2"))
        assert await _ids_in(amqp, refresher_spec.queue) == ["oauth"]  # once, not twice; no API key
    finally:
        await publisher.close()


async def test_the_outbox_sweep_publishes_the_same_headers_as_a_direct_publish(
    amqp: AbstractRobustConnection,
    amqp_url: str,
    namespace: str,
    db: Database,
    refresher_spec: ConsumerSpec,
) -> None:
    channel = await amqp.channel()
    await declare_consumer(channel, refresher_spec, queue_type="classic")
    await channel.close()
    outbox = OutboxStore(db)
    # Rows the broker never saw (their writer died before publishing): the sweep's to send.
    await outbox.add_many([_event("swept-key", "API_KEY"), _event("swept-oauth", "OAUTH2")])
    broker = BrokerLink(amqp_url, name="header-filter-test", exchange=refresher_spec.exchange)
    broker.start()
    relay = OutboxRelay(outbox, broker, sweep_every=3600, stale_after=0, owner="test")
    try:
        await asyncio.wait_for(broker.connected.wait(), timeout=10)
        assert await relay.sweep_once() == 2
        assert await _ids_in(amqp, refresher_spec.queue) == ["swept-oauth"]
        rows = await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(seconds=1), limit=10, owner="x")
        assert rows == []  # both published and deleted
    finally:
        await broker.close()


async def test_a_row_written_before_rows_kept_headers_still_goes_out(db: Database) -> None:
    outbox = OutboxStore(db)
    event = _event("old", "OAUTH2")
    await db["outbox"].insert_one(
        {
            "_id": event.id,
            "routing_key": event.type,
            "body": event.to_json_bytes(),
            "created_at": event.time,
            "lease_until": event.time,
        }
    )
    (row,) = await outbox.claim_stale(older_than=timedelta(0), lease=timedelta(seconds=5), limit=10, owner="x")
    assert row.amqp_headers == {"ce_id": event.id, "ce_type": "connection.created"}
    assert isinstance(aio_pika.Message(b"", headers=row.amqp_headers).headers, dict)


async def test_start_up_drops_the_outbox_index_no_query_needs(db: Database) -> None:
    """The outbox's ``lease`` index (earlier releases) cost every event two entries and served no read."""
    await db["outbox"].create_index("lease_until", name="lease")
    await ensure_indexes(db, ["outbox"])
    names = {index["name"] async for index in await db["outbox"].list_indexes()}
    assert names == {"_id_", "created"}
    await ensure_indexes(db, ["outbox"])  # again, with nothing to drop: no error
    assert RETIRED_INDEXES["outbox"] == ("lease",)

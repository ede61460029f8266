"""The gateway's paths through faults, with no broker or database (issue 15, item 4):

- a write's wait for the broker's confirmation (``OutboxRelay.drained``) ends at the request's
  deadline, and a batch the broker has sat on for longer keeps no later writer waiting;
- the ``last_fetched_at`` flush loop survives any exception and backs off, and writes on a budget;
- an on-connect callback that fails (the broker link runs it again) closes the channel it opened.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from auth_gateway.connect.ws import WsHub
from auth_gateway.connection_cache import ConnectionCache
from auth_gateway.operations.fetch_recorder import FetchRecorder
from keyway_shared.bus.environment_changes import EnvironmentChanges
from keyway_shared.deadline import request_deadline
from keyway_shared.outbox_relay import OutboxRelay
from keyway_shared.store import OutboxRow

from ..support.polling import eventually

# --- the broker's confirmation -------------------------------------------------------------------


class SilentPublisher:
    """A blackholed broker: a publish is never confirmed, and nothing says the link is gone."""

    def __init__(self) -> None:
        self.published = 0

    async def publish_message(self, message: aio_pika.Message, *, routing_key: str) -> None:
        self.published += 1
        await asyncio.Event().wait()


class Broker:
    def __init__(self) -> None:
        self.publisher = SilentPublisher()
        self.is_connected = True


class Outbox:
    async def delete(self, _ids: list[str]) -> None:
        return None

    async def release(self, _ids: list[str]) -> None:
        return None


def row(event_id: str) -> OutboxRow:
    return OutboxRow(event_id=event_id, routing_key="connection.created", body=b"{}", created_at=datetime.now(UTC))


@pytest.fixture
async def relay() -> Any:
    fake_outbox: Any = Outbox()
    fake_broker: Any = Broker()
    outbox_relay = OutboxRelay(fake_outbox, fake_broker, sweep_every=60, stale_after=60, owner="test")
    yield outbox_relay
    await outbox_relay.stop(grace=0)
    for task in list(outbox_relay._tasks):
        task.cancel()


async def test_a_writer_waits_for_the_broker_no_longer_than_its_requests_deadline(relay: OutboxRelay) -> None:
    with request_deadline(0.3):
        relay.publish_soon([row("first")])
        started = time.monotonic()
        confirmed = await relay.drained()
        took = time.monotonic() - started
    assert confirmed is False
    assert took < 1.0  # not the relay's own five seconds of patience


async def test_a_batch_the_broker_sits_on_keeps_no_later_writer_waiting(relay: OutboxRelay) -> None:
    relay.publish_soon([row("stuck")])
    assert await relay.drained(patience=0.2) is False  # the first writer waited its patience
    with request_deadline(5.0):
        relay.publish_soon([row("later")])
        started = time.monotonic()
        assert await relay.drained(patience=0.2) is False
        assert time.monotonic() - started < 0.1  # at once: the batch before it is long past its patience


# --- the last_fetched_at flush loop --------------------------------------------------------------


class FlakyConnections:
    """A store whose first writes raise something no one foresaw, then work."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.written: list[tuple[str, str, str]] = []

    async def touch_fetched(self, keys: list[tuple[str, str, str]], _at: datetime) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("not a PyMongoError")
        self.written.extend(keys)


async def test_the_flush_loop_survives_any_exception() -> None:
    store = FlakyConnections(failures=1)
    fake: Any = store
    recorder = FetchRecorder(fake, every=0.02)
    recorder.note("dev", "ph", "first")
    recorder.start()
    try:

        async def failed() -> bool:
            return store.calls >= 1

        await eventually(failed, timeout=5, what="a failing flush")
        recorder.note("dev", "ph", "second")

        async def recorded() -> bool:
            return ("dev", "ph", "second") in store.written

        await eventually(recorded, timeout=5, what="a flush after the failures")
    finally:
        await recorder.stop()


async def test_reads_are_recorded_on_a_budget_the_first_noted_first() -> None:
    store = FlakyConnections(failures=0)
    fake: Any = store
    recorder = FetchRecorder(fake, per_flush=20)
    for i in range(50):
        recorder.note("dev", "ph", f"c{i}")
    recorder.note("dev", "ph", "c0")  # read again: keeps its place in the line
    assert await recorder.flush() is True
    assert store.written == [("dev", "ph", f"c{i}") for i in range(20)]
    assert store.calls == 1
    await recorder.flush()
    assert len(store.written) == 40
    recorder.note("dev", "ph", "c1")  # recorded less than the granularity ago: not noted again
    recorder.note("dev", "ph", "late")
    await recorder.stop()  # what is left goes out on shutdown, budget aside, still in chunks
    assert store.written[40:] == [("dev", "ph", f"c{i}") for i in range(40, 50)] + [("dev", "ph", "late")]
    assert store.calls == 3


# --- on-connect callbacks that fail --------------------------------------------------------------


class RefusingChannel:
    """A channel whose declarations the broker refuses (a precondition, a channel closed under it)."""

    def __init__(self) -> None:
        self.closed = False

    async def declare_exchange(self, *_args: Any, **_kwargs: Any) -> Any:
        raise aio_pika.exceptions.ChannelClosed(406, "PRECONDITION_FAILED")

    async def close(self) -> None:
        self.closed = True


class Connection:
    def __init__(self) -> None:
        self.channels: list[RefusingChannel] = []

    async def channel(self, **_kwargs: Any) -> RefusingChannel:
        channel = RefusingChannel()
        self.channels.append(channel)
        return channel


def attaches() -> dict[str, Any]:
    changes = EnvironmentChanges(exchange_name="x")
    hub = WsHub(exchange_name="x")
    cache = ConnectionCache(max_entries=10)
    return {
        "environment changes": changes.attach,
        "websocket hub": hub.attach,
        "connection cache": lambda connection: cache.attach(connection, events_exchange="x", prefix="t"),
    }


@pytest.mark.parametrize("name", list(attaches()))
async def test_a_failed_attach_closes_the_channel_it_opened(name: str) -> None:
    attach = attaches()[name]
    connection = Connection()
    for _ in range(3):  # the broker link's tries
        with pytest.raises(aio_pika.exceptions.ChannelClosed):
            await attach(connection)
    assert len(connection.channels) == 3
    assert all(channel.closed for channel in connection.channels)

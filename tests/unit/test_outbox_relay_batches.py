"""How the outbox relay publishes a batch and whom it keeps waiting, with a broker whose confirms
the test gives by hand:

- every row of a batch is in flight at once, in the order handed over;
- a writer waits for the rows handed over before it, never for the batches after;
- a row the broker refuses goes back to the sweep, and the others of its batch are deleted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from keyway_shared.bus import PublishError
from keyway_shared.outbox_relay import OutboxRelay
from keyway_shared.store import OutboxRow


class HandConfirmedPublisher:
    """Each publish waits until the test confirms (or refuses) its event id."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._answers: dict[str, asyncio.Future[bool]] = {}

    def _answer(self, event_id: str) -> asyncio.Future[bool]:
        return self._answers.setdefault(event_id, asyncio.get_running_loop().create_future())

    async def publish_message(self, message: aio_pika.Message, *, routing_key: str) -> None:
        event_id = str(message.message_id)
        self.sent.append(event_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if not await self._answer(event_id):
                raise PublishError(f"publish of {routing_key} was not confirmed: nack")
        finally:
            self.in_flight -= 1

    def confirm(self, *event_ids: str, ok: bool = True) -> None:
        for event_id in event_ids:
            self._answer(event_id).set_result(ok)


class Broker:
    def __init__(self) -> None:
        self.publisher = HandConfirmedPublisher()
        self.is_connected = True


class Outbox:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.released: list[str] = []

    async def delete(self, ids: list[str]) -> None:
        self.deleted.extend(ids)

    async def release(self, ids: list[str]) -> None:
        self.released.extend(ids)


def row(event_id: str) -> OutboxRow:
    return OutboxRow(event_id=event_id, routing_key="connection.created", body=b"{}", created_at=datetime.now(UTC))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def parts() -> Any:
    outbox, broker = Outbox(), Broker()
    fake_outbox: Any = outbox
    fake_broker: Any = broker
    relay = OutboxRelay(fake_outbox, fake_broker, sweep_every=60, stale_after=60, owner="test")
    yield relay, broker.publisher, outbox
    await relay.stop(grace=0)
    for task in list(relay._tasks):
        task.cancel()


async def test_a_batch_is_in_flight_at_once_in_its_order(parts: Any) -> None:
    relay, publisher, outbox = parts
    relay.publish_soon([row(f"e{i}") for i in range(5)])
    await settle()
    assert publisher.sent == ["e0", "e1", "e2", "e3", "e4"]
    assert publisher.in_flight == 5  # nobody waited for a confirm before sending the next
    publisher.confirm("e4", "e3", "e2", "e1", "e0")  # confirms may come in any order
    assert await relay.drained(patience=1.0) is True
    await settle()
    assert outbox.deleted == ["e0", "e1", "e2", "e3", "e4"]


async def test_a_writer_waits_for_the_rows_before_it_not_for_later_batches(parts: Any) -> None:
    relay, publisher, _outbox = parts
    relay.publish_soon([row("mine")])
    await settle()  # the flusher took "mine": its batch is in flight
    mine = asyncio.create_task(relay.drained(patience=5.0))
    await settle()  # the writer is waiting before the next row is handed over
    relay.publish_soon([row("later")])  # waits in the buffer for the next batch
    theirs = asyncio.create_task(relay.drained(patience=5.0))
    await settle()
    assert not mine.done()
    publisher.confirm("mine")
    assert await asyncio.wait_for(mine, timeout=1.0) is True  # "later" is not even published yet
    await settle()
    assert publisher.sent == ["mine", "later"]
    assert not theirs.done()
    publisher.confirm("later")
    assert await asyncio.wait_for(theirs, timeout=1.0) is True


async def test_a_refused_row_goes_back_to_the_sweep_and_the_others_are_deleted(parts: Any) -> None:
    relay, publisher, outbox = parts
    relay.publish_soon([row("a"), row("b"), row("c")])
    await settle()
    waiting = asyncio.create_task(relay.drained(patience=5.0))
    publisher.confirm("a", "c")
    publisher.confirm("b", ok=False)
    assert await asyncio.wait_for(waiting, timeout=1.0) is False  # a row of its batch waits for the sweep
    await settle()
    assert outbox.released == ["b"]
    assert outbox.deleted == ["a", "c"]
    assert relay.pending == 0
    # The next writer is not blamed for it.
    relay.publish_soon([row("d")])
    next_writer = asyncio.create_task(relay.drained(patience=5.0))
    await settle()
    publisher.confirm("d")
    assert await asyncio.wait_for(next_writer, timeout=1.0) is True

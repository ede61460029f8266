"""Moves events from the outbox to RabbitMQ: at once after each write, and by sweeping stale rows.

Any service that writes outbox rows hands them to ``publish_soon`` right after its transaction
commits and carries on; the rows are deleted once the broker confirmed (the rows that gathered
while a publish was under way go out together, with one delete). If the publish fails
(broker down), the rows stay in MongoDB and the sweep loop of any replica publishes them once the
broker is back (consumers skip the rare duplicate by event id).

The gateway and the token-refresher both relay with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

import aio_pika
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from .backoff import Backoff, is_cancellation
from .deadline import remaining, spawn_detached
from .logging import get_logger
from .service.broker import BrokerLink
from .store import OutboxRow, OutboxStore

__all__ = ["OutboxRelay"]

log = get_logger(__name__)
# One set of counters for every service that relays (the gateway, the token-refresher).
PUBLISHED = Counter("keyway_outbox_relay_published_total", "Outbox events confirmed by the broker", ["path"])
PUBLISH_FAILURES = Counter(
    "keyway_outbox_relay_publish_failures_total", "Outbox publishes that failed and wait for a sweep"
)


def _message(row: OutboxRow) -> aio_pika.Message:
    return aio_pika.Message(
        body=row.body,
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=row.event_id,
        type=row.routing_key,
        headers=row.amqp_headers,
    )


class OutboxRelay:
    def __init__(
        self,
        outbox: OutboxStore,
        broker: BrokerLink,
        *,
        sweep_every: float,
        stale_after: float,
        owner: str,
        sweep_lease: float = 30.0,
    ) -> None:
        self._outbox = outbox
        self._broker = broker
        self._sweep_every = sweep_every
        self._stale_after = timedelta(seconds=stale_after)
        self._sweep_lease = timedelta(seconds=sweep_lease)
        self._owner = owner
        self._tasks: set[asyncio.Task[int]] = set()
        self._buffer: list[OutboxRow] = []
        self._publishing = 0
        self._flusher: asyncio.Task[int] | None = None
        self._left_behind = 0  # rows a direct publish could not send (for ``drained``)
        # Rows handed to ``publish_soon`` so far, and how many of them are settled (confirmed or
        # given back). Batches settle in the order they were handed over, so a writer waits for the
        # count it saw to be reached: its own rows and those before, never the batches after.
        self._handed = 0
        self._settled = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._batch_since: float | None = None  # loop time the batch being published was started
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Rows handed to ``publish_soon`` and not published (or given back) yet."""
        return len(self._buffer) + self._publishing

    def publish_soon(self, rows: list[OutboxRow]) -> None:
        """Queue the rows; one flusher publishes them in order and deletes each flush's rows in one
        round trip, so under load many refreshes share a delete instead of paying one each."""
        self._buffer.extend(rows)
        self._handed += len(rows)
        if self._flusher is None or self._flusher.done():
            # Not under the deadline of the request that happens to start it: it serves later ones too.
            self._flusher = spawn_detached(self._flush(), name="outbox-flush")
            self._tasks.add(self._flusher)
            self._flusher.add_done_callback(self._tasks.discard)

    async def drained(self, *, patience: float = 5.0) -> bool:
        """Wait until every row handed over so far is confirmed by the broker (True), or given back
        to the sweep; rows handed over after this call are not waited for.

        A writer that must not acknowledge before its event is in every subscriber's queue (the
        gateway's connection cache) waits here, up to the request's deadline (``keyway_shared.deadline``).
        A batch the broker has not confirmed in ``patience`` seconds (blackholed: nothing says it is
        gone) keeps no writer waiting any longer: its rows are left to the sweep, as always (False).
        """
        left_before = self._left_behind
        target = self._handed
        if self._settled < target:
            since = self._batch_since
            if since is not None:
                patience = max(0.0, patience - (asyncio.get_running_loop().time() - since))
            settled = asyncio.get_running_loop().create_future()
            self._waiters.append((target, settled))
            try:
                await asyncio.wait_for(settled, timeout=remaining(patience))
            except TimeoutError:
                return False
        return self._left_behind == left_before  # else some rows (maybe another writer's) wait for the sweep

    def _settle(self, count: int) -> None:
        self._settled += count
        while self._waiters and self._waiters[0][0] <= self._settled:
            _target, settled = self._waiters.pop(0)
            if not settled.done():
                settled.set_result(None)

    async def _flush(self) -> int:
        published = 0
        while self._buffer:
            rows, self._buffer = self._buffer, []
            self._publishing = len(rows)
            self._batch_since = asyncio.get_running_loop().time()
            settled = False

            def confirmed(count: int = len(rows)) -> None:
                nonlocal settled
                if not settled:
                    settled = True
                    self._settle(count)

            try:
                published += await self._publish(rows, path="direct", confirmed=confirmed)
            finally:
                confirmed()  # whatever happened, these rows are not waited for any longer
                self._publishing = 0
                self._batch_since = None
        return published

    async def _publish(self, rows: list[OutboxRow], *, path: str, confirmed: Callable[[], None] = lambda: None) -> int:
        """Publish ``rows`` with every confirm in flight at once, then delete the confirmed ones in
        one round trip and hand the others back to the sweep.

        One at a time, each publish waited for its confirm, which RabbitMQ gives once every quorum
        queue the event is routed to has it on disk: a flush of n rows took n of those waits, and
        under load they were most of a write's answer time. In flight together on one channel, the
        rows still reach every queue in their order; only when the broker refuses some of them
        does one that follows a refused one arrive before it (the sweep sends the refused later).
        ``confirmed`` is called once the broker has answered for every row, before the delete: the
        writers waiting in ``drained`` need the confirms, not the delete.
        """
        publisher = self._broker.publisher
        if publisher is None or not self._broker.is_connected:
            self._left_behind += len(rows)
            return 0
        results = await asyncio.gather(
            *(publisher.publish_message(_message(row), routing_key=row.routing_key) for row in rows),
            return_exceptions=True,
        )
        done: list[str] = []
        failed: list[tuple[OutboxRow, BaseException]] = []
        for row, result in zip(rows, results, strict=True):
            if not isinstance(result, BaseException):
                done.append(row.event_id)
                continue
            if is_cancellation(result):
                raise result
            failed.append((row, result))
        if failed:
            # PublishError, or whatever else a broken link raised: these rows wait for the sweep.
            PUBLISH_FAILURES.inc(len(failed))
            first, error = failed[0]
            log.warning(
                "events left in the outbox for the sweep",
                count=len(failed),
                event_id=first.event_id,
                type=first.routing_key,
                error=error.__class__.__name__,
            )
            self._left_behind += len(failed)
        confirmed()
        if failed:
            # Handed back for the next sweep right away, rather than at the end of a lease.
            with contextlib.suppress(PyMongoError):
                await self._outbox.release([row.event_id for row, _error in failed])
        if done:
            try:
                await self._outbox.delete(done)
            except PyMongoError:
                # Published but not deleted: the sweep publishes them again and consumers skip the duplicate.
                log.warning("published outbox rows could not be deleted", count=len(done))
            PUBLISHED.labels(path=path).inc(len(done))
        return len(done)

    async def sweep_once(self, *, limit: int = 500) -> int:
        if not self._broker.is_connected:
            return 0
        rows = await self._outbox.claim_stale(
            older_than=self._stale_after, lease=self._sweep_lease, limit=limit, owner=self._owner
        )
        if not rows:
            return 0
        log.info("relaying events left in the outbox", count=len(rows))
        return await self._publish(rows, path="sweep")

    async def _loop(self) -> None:
        # Never ends but by cancellation: a sweep that fails is logged and tried again, later and
        # later (capped) while it keeps failing.
        backoff = Backoff(first=self._sweep_every, cap=max(self._sweep_every, 30.0))
        delay = self._sweep_every
        while True:
            await asyncio.sleep(delay)
            try:
                while await self.sweep_once() > 0:
                    pass
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                delay = backoff.next()
                if isinstance(exc, PyMongoError):
                    log.warning("outbox sweep could not reach the database", retry_in=round(delay, 1))
                else:
                    log.exception("outbox sweep failed", retry_in=round(delay, 1))
                continue
            backoff.reset()
            delay = self._sweep_every

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="outbox-sweep")

    async def stop(self, *, grace: float) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            # In-flight publishes finish or time out; unconfirmed rows stay for the next sweep.
            await asyncio.wait(list(self._tasks), timeout=grace)

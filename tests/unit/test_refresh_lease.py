"""``kept_lease``: extensions every third of the lease while the block runs, none for a short block,
none after the lease is lost, and none landing after the block has ended. The lease's clock is a
stepped one: the periods pass when the test says, exactly."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from keyway_shared.clock import sleep
from keyway_shared.refresh.lease import kept_lease

from ..support.clock import SteppedClock

LEASE = timedelta(seconds=30)  # an extension every 10 s


class Extensions:
    def __init__(self, clock: SteppedClock, *, held: bool = True, takes: float = 0.0) -> None:
        self.clock = clock
        self.held = held
        self.takes = takes
        self.started: list[float] = []  # seconds since the block began, by the clock
        self.finished = 0

    async def __call__(self) -> bool:
        self.started.append(round(self.clock.monotonic() - 1000.0, 3))
        if self.takes:
            await sleep(self.clock, self.takes)
        self.finished += 1
        return self.held


async def test_a_long_block_extends_every_third_of_the_lease() -> None:
    clock = SteppedClock()
    extend = Extensions(clock)
    async with kept_lease(extend, LEASE, clock=clock):
        await clock.step(55)
    assert extend.started == [10, 20, 30, 40, 50]
    assert extend.finished == 5


async def test_a_block_shorter_than_a_third_writes_nothing() -> None:
    clock = SteppedClock()
    extend = Extensions(clock)
    async with kept_lease(extend, LEASE, clock=clock):
        await clock.step(9.9)
    await clock.step(60)
    assert extend.started == []


async def test_a_lost_lease_is_not_extended_again() -> None:
    clock = SteppedClock()
    extend = Extensions(clock, held=False)
    async with kept_lease(extend, LEASE, clock=clock):
        await clock.step(45)
    assert extend.started == [10]


async def test_the_block_ends_only_after_an_extension_in_flight_has_landed() -> None:
    clock = SteppedClock()
    extend = Extensions(clock, takes=20)
    leave = asyncio.Event()

    async def block() -> None:
        async with kept_lease(extend, LEASE, clock=clock):
            await leave.wait()

    holder = asyncio.create_task(block())
    await clock.step(15)  # the first extension started at 10 s and lands at 30 s
    assert extend.started == [10]
    leave.set()
    await clock.step(14.9)
    assert not holder.done()  # the block's end waits for the extension in flight...
    assert extend.finished == 0
    await clock.step(0.1)
    assert holder.done()  # ...so the caller's release cannot be overtaken by it
    assert extend.finished == 1
    await clock.step(60)
    assert extend.started == [10]

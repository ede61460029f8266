"""The micro-batcher: size and delay triggers, errors reach every submitter, close flushes the rest."""

from __future__ import annotations

import asyncio
import time

import pytest

from keyway_shared.batching import Batcher, BatcherClosedError


class Recorder:
    def __init__(self, *, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.delay = delay

    async def __call__(self, items: list[int]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.batches.append(list(items))
        if self.fail is not None:
            raise self.fail


async def test_concurrent_submits_share_one_flush() -> None:
    flush = Recorder()
    batcher: Batcher[int] = Batcher(flush, max_size=100, max_delay=0.02)
    await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert flush.batches == [list(range(10))]


async def test_full_batch_flushes_without_waiting_for_the_delay() -> None:
    flush = Recorder()
    batcher: Batcher[int] = Batcher(flush, max_size=5, max_delay=30.0)
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(10))), timeout=5)
    assert time.monotonic() - started < 5
    assert flush.batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


async def test_gather_of_twelve_with_size_five_completes_on_close() -> None:
    flush = Recorder()
    batcher: Batcher[int] = Batcher(flush, max_size=5, max_delay=30.0)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(12)]
    await asyncio.sleep(0.05)
    assert sum(t.done() for t in tasks) == 10  # two full batches returned; two items still pending
    await batcher.close()
    await asyncio.gather(*tasks)
    assert [len(b) for b in flush.batches] == [5, 5, 2]


async def test_submit_returns_only_after_the_flush_finished() -> None:
    flush = Recorder(delay=0.1)
    batcher: Batcher[int] = Batcher(flush, max_size=10, max_delay=0.0)
    await batcher.submit(1)
    assert flush.batches == [[1]]


async def test_flush_error_is_raised_to_every_submitter_of_that_batch() -> None:
    flush = Recorder(fail=RuntimeError("database down"))
    batcher: Batcher[int] = Batcher(flush, max_size=10, max_delay=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and str(r) == "database down" for r in results)
    # The next batch is independent of the failed one.
    flush.fail = None
    await batcher.submit(7)
    assert flush.batches[-1] == [7]


async def test_a_cancelled_submitter_does_not_cancel_its_neighbours() -> None:
    flush = Recorder(delay=0.05)
    batcher: Batcher[int] = Batcher(flush, max_size=10, max_delay=0.01)
    first = asyncio.create_task(batcher.submit(1))
    second = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.02)
    first.cancel()
    await second
    assert flush.batches == [[1, 2]]
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_close_flushes_pending_items_and_refuses_new_ones() -> None:
    flush = Recorder()
    batcher: Batcher[int] = Batcher(flush, max_size=10, max_delay=60.0)
    task = asyncio.create_task(batcher.submit(5))
    await asyncio.sleep(0)
    await batcher.close()
    await task
    assert flush.batches == [[5]]
    with pytest.raises(BatcherClosedError):
        await batcher.submit(6)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(Recorder(), max_size=0)
    with pytest.raises(ValueError, match="max_delay"):
        Batcher(Recorder(), max_delay=-1)

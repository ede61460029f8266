"""GroupCommit: concurrent callers share flushes, each gets its own answer, failures reach every caller."""

from __future__ import annotations

import asyncio

import pytest

from keyway_shared.group_commit import GroupCommit


async def test_calls_made_together_share_one_flush_and_get_their_own_results() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        return [item * 10 for item in items]

    commit = GroupCommit(flush)
    assert await asyncio.gather(*(commit.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert flushes == [[0, 1, 2, 3, 4]]


async def test_calls_arriving_during_a_flush_go_together_in_the_next() -> None:
    flushes: list[list[str]] = []
    first_running = asyncio.Event()
    release_first = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        flushes.append(items)
        if len(flushes) == 1:
            first_running.set()
            await release_first.wait()
        return [item.upper() for item in items]

    commit = GroupCommit(flush)
    first = asyncio.create_task(commit.submit("a"))
    await first_running.wait()
    later = [asyncio.create_task(commit.submit(x)) for x in ("b", "c", "d")]
    await asyncio.sleep(0.01)
    assert flushes == [["a"]]  # one flush at a time: the others wait, no timer fires
    release_first.set()
    assert await first == "A"
    assert [await task for task in later] == ["B", "C", "D"]
    assert flushes == [["a"], ["b", "c", "d"]]


async def test_batches_are_bounded_and_the_rest_follows() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    commit = GroupCommit(flush, max_size=4)
    assert await asyncio.gather(*(commit.submit(i) for i in range(10))) == list(range(10))
    assert sizes == [4, 4, 2]


async def test_a_failed_flush_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    async def flush(items: list[int]) -> list[int]:
        if 0 in items:
            raise ConnectionError("database went away")
        return items

    commit = GroupCommit(flush)
    results = await asyncio.gather(*(commit.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await commit.submit(7) == 7


async def test_a_cancelled_caller_leaves_the_batch_to_the_others() -> None:
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        await gate.wait()
        return items

    commit = GroupCommit(flush)
    leaving = asyncio.create_task(commit.submit(1))
    staying = asyncio.create_task(commit.submit(2))
    await asyncio.sleep(0.01)
    leaving.cancel()
    gate.set()
    assert await staying == 2
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_flush_answering_the_wrong_number_of_results_is_an_error() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items[:-1]

    commit = GroupCommit(flush)
    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        await asyncio.gather(*(commit.submit(i) for i in range(3)))


def test_max_size_must_be_positive() -> None:
    async def flush(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="max_size"):
        GroupCommit(flush, max_size=0)


async def test_a_lingering_batch_waits_for_company_unless_it_is_full() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        return items

    commit = GroupCommit(flush, max_size=3, linger=0.05)
    first = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0.01)
    assert flushes == []  # lingering
    second = asyncio.create_task(commit.submit(2))
    assert [await first, await second] == [1, 2]
    assert flushes == [[1, 2]]
    full = [asyncio.create_task(commit.submit(i)) for i in (3, 4, 5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert flushes == [[1, 2], [3, 4, 5]]  # full: gone without the linger
    assert [await task for task in full] == [3, 4, 5]
    await commit.close()

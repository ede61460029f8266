"""``keyway_shared.deadline``: one deadline for a request's database and broker waits, restarted after a
third party's answer, and left behind by the work that must outlive it.

PyMongo keeps its client-side operation timeout in context variables of its private ``_csot``
module; ``restart`` and the detached context set them directly. These tests pin the behaviour that
relies on (what PyMongo itself reads: ``_csot.remaining()``), so a PyMongo upgrade that changes it
fails here rather than in production.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pymongo
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pymongo import _csot

from keyway_shared.deadline import (
    beyond_deadline,
    budget,
    remaining,
    request_deadline,
    restart,
    restart_after_third_parties,
    spawn_detached,
)


def driver_remaining() -> float | None:
    """What PyMongo's operations see as the time left (None: no deadline)."""
    return _csot.remaining()


async def test_the_driver_and_the_broker_waits_share_the_requests_deadline() -> None:
    assert driver_remaining() is None
    assert remaining(7.0) == 7.0
    with request_deadline(2.0):
        assert budget() == 2.0
        left = driver_remaining()
        assert left is not None
        assert 1.9 < left <= 2.0
        assert 1.9 < remaining(7.0) <= 2.0
        assert remaining(0.5) == 0.5  # a shorter wait keeps its own bound
    assert driver_remaining() is None
    assert budget() is None
    assert remaining(7.0) == 7.0


async def test_restart_gives_the_whole_budget_again_even_past_the_blocks_own_deadline() -> None:
    with request_deadline(0.3):
        await asyncio.sleep(0.35)  # a slow provider
        left = driver_remaining()
        assert left is not None
        assert left < 0
        restart()
        left = driver_remaining()
        assert left is not None
        assert 0.25 < left <= 0.3
        assert 0.25 < remaining(5.0) <= 0.3
    assert driver_remaining() is None  # the block resets what restart set
    restart()  # outside a request: nothing to restart
    assert driver_remaining() is None


async def test_a_nested_pymongo_timeout_still_shortens_it() -> None:
    with request_deadline(5.0), pymongo.timeout(0.5):
        left = driver_remaining()
        assert left is not None
        assert left <= 0.5


async def test_detached_work_runs_without_the_deadline_the_request_keeps_its_own() -> None:
    seen: list[tuple[float | None, float | None, float]] = []

    async def job() -> None:
        seen.append((driver_remaining(), budget(), remaining(9.0)))

    with request_deadline(1.0):
        await spawn_detached(job())
        assert seen == [(None, None, 9.0)]
        left = driver_remaining()
        assert left is not None
        assert left <= 1.0


async def test_beyond_deadline_finishes_when_the_caller_leaves_and_restarts_the_callers_deadline() -> None:
    finished = asyncio.Event()

    async def slow_write() -> str:
        assert driver_remaining() is None
        await asyncio.sleep(0.3)
        finished.set()
        return "stored"

    with request_deadline(0.2):
        assert await beyond_deadline(slow_write()) == "stored"
        left = driver_remaining()
        assert left is not None
        assert 0.15 < left <= 0.2

        finished.clear()
        caller = asyncio.create_task(beyond_deadline(slow_write()))
        await asyncio.sleep(0.05)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    await asyncio.wait_for(finished.wait(), timeout=2)  # the write went on to its end


async def test_a_third_partys_answer_restarts_the_callers_deadline() -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        aiohttp.ClientSession(trace_configs=[restart_after_third_parties()]) as session,
    ):
        with request_deadline(0.2):
            started = time.monotonic()
            async with session.get(server.make_url("/")) as resp:
                assert resp.status == 200
            assert time.monotonic() - started > 0.2  # past the first deadline…
            left = driver_remaining()
            assert left is not None
            assert left > 0.1

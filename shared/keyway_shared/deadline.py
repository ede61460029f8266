"""One deadline for a request's waits on the database and the broker: an outage answers in seconds.

A gateway request runs inside :func:`request_deadline`: PyMongo's client-side operation timeout
(CSOT, ``pymongo.timeout``) bounds every database operation in it (server selection, connection
checkout, the round trip, a transaction's retries) by one deadline, and :func:`remaining` bounds
its broker waits (a publish confirmation, the connection cache's barrier) by the same one. A
database that is cut off or blackholed then costs a request the deadline, not the driver's own
patience (20 s and more for a blackholed socket), and the error middleware answers 503.

Waiting on a third party is not waiting on the database: :func:`restart` gives the waits that
follow the whole budget again. The gateway calls it as each call to a provider ends
(:func:`restart_after_third_parties`), so a token endpoint that took four seconds does not leave
the write of its tokens one.

Some work must not be cut by a request's deadline, and runs outside it (:func:`spawn_detached`,
:func:`beyond_deadline`): tasks a request starts that outlive it (the outbox relay's flusher, a bulk
revocation), and the part of a refresh that holds the lease, where a provider may have rotated the
refresh token and the write that stores the new one holds its only copy.

PyMongo keeps its deadline in context variables, which a task inherits from the request that
started it; the detached context clears them. They live in PyMongo's private ``_csot`` module (the
version is pinned; ``tests/unit/test_deadline.py`` checks the behaviour this relies on).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import aiohttp
import pymongo
from pymongo import _csot

__all__ = [
    "beyond_deadline",
    "budget",
    "deadline_at",
    "detached_context",
    "remaining",
    "request_deadline",
    "restart",
    "restart_after_third_parties",
    "spawn_detached",
    "spawn_until",
]

T = TypeVar("T")

_BUDGET: contextvars.ContextVar[float | None] = contextvars.ContextVar("keyway_deadline_budget", default=None)
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("keyway_deadline", default=math.inf)
_DETACHED: set[asyncio.Task[Any]] = set()  # shielded work whose caller left: kept until it ends


class _RequestDeadline(contextlib.AbstractContextManager[None]):
    # A class, not a generator: every request enters one (about 1.5 µs, against 2.6 µs).
    __slots__ = ("_budget_token", "_deadline_token", "_driver", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._driver = pymongo.timeout(seconds)

    def __enter__(self) -> None:
        self._budget_token = _BUDGET.set(self._seconds)
        self._deadline_token = _DEADLINE.set(min(_DEADLINE.get(), time.monotonic() + self._seconds))
        self._driver.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._driver.__exit__(None, None, None)
        _DEADLINE.reset(self._deadline_token)
        _BUDGET.reset(self._budget_token)


def request_deadline(seconds: float) -> contextlib.AbstractContextManager[None]:
    """Database and broker waits in the block end ``seconds`` from now (or at an earlier outer deadline)."""
    return _RequestDeadline(seconds)


def budget() -> float | None:
    """The seconds each stretch of the current request gets (None: not in a request)."""
    return _BUDGET.get()


def restart() -> None:
    """The waits that follow get the whole budget again (outside a request: nothing changes).

    For the end of a wait that is not the database's or the broker's, such as a provider's answer.
    Set, not nested: the rest of the request keeps it, and the request's block resets it all.
    """
    seconds = _BUDGET.get()
    if seconds is None:
        return
    deadline = time.monotonic() + seconds
    _DEADLINE.set(deadline)
    # What pymongo.timeout(seconds) sets on entry; it cannot be nested to extend an outer deadline.
    _csot.TIMEOUT.set(seconds)
    _csot.DEADLINE.set(deadline)
    _csot.RTT.set(0.0)


def remaining(cap: float) -> float:
    """Seconds a broker wait may take now: ``cap``, or less if the request's deadline comes first (≥ 0)."""
    return max(0.0, min(cap, _DEADLINE.get() - time.monotonic()))


def _clear() -> None:
    _BUDGET.set(None)
    _DEADLINE.set(math.inf)
    _csot.reset_all()


def detached_context() -> contextvars.Context:
    """A copy of the current context (log fields, the client's address…) without any deadline."""
    context = contextvars.copy_context()
    context.run(_clear)
    return context


def spawn_detached(work: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task outside the current request's deadline: for work that outlives the request."""
    return asyncio.get_running_loop().create_task(work, name=name, context=detached_context())


def deadline_at() -> float:
    """When the current request's deadline falls, by ``time.monotonic()`` (inf: none; now if passed)."""
    return time.monotonic() + remaining(math.inf)


def spawn_until(work: Coroutine[Any, Any, T], until: float, *, name: str | None = None) -> asyncio.Task[T]:
    """A task outside the current request's deadline, under ``until`` (a :func:`deadline_at`) instead:
    work shared by several requests (a group commit's batch) runs under the latest of theirs, not
    under whichever request happened to start it."""
    return spawn_detached(_until(work, until), name=name)


async def _until(work: Coroutine[Any, Any, T], until: float) -> T:
    if math.isinf(until):
        return await work
    with request_deadline(max(0.0, until - time.monotonic())):
        return await work


async def beyond_deadline(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` outside the request's deadline and wait for it; it runs on to its end if the
    caller is cancelled. The caller's waits after it get the whole budget again."""
    task = spawn_detached(work)
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)
    try:
        return await asyncio.shield(task)
    finally:
        restart()


async def _restart_after(_session: aiohttp.ClientSession, _context: SimpleNamespace, _params: Any) -> None:
    restart()


def restart_after_third_parties() -> aiohttp.TraceConfig:
    """For a client session to third parties: each call's end (answer or failure) restarts the deadline.

    aiohttp awaits trace callbacks in the task that makes the call, so the restart is the caller's.
    """
    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_restart_after)
    trace.on_request_exception.append(_restart_after)
    return trace

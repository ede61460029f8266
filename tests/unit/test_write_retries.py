"""Connection writes tried again after a write conflict or a lost commit answer: apart (a capped,
jittered backoff), within the request's deadline, and with the driver's own error at the end (a
503), never a bare "kept colliding". The real database's conflicts are in
``tests/integration/test_write_conflicts.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from keyway_shared.deadline import request_deadline
from keyway_shared.store import connections


def conflict() -> OperationFailure:
    return OperationFailure("WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})


def unknown_commit() -> OperationFailure:
    return OperationFailure("lost", code=91, details={"errorLabels": ["UnknownTransactionCommitResult"]})


class Colliding:
    """A transaction that loses ``times`` conflicts (None: every one), then commits."""

    def __init__(self, times: int | None) -> None:
        self.times = times
        self.tries: list[float] = []

    async def __call__(self) -> str:
        self.tries.append(time.monotonic())
        if self.times is None or len(self.tries) <= self.times:
            raise conflict()
        return "written"


async def test_tries_again_apart_and_further_apart() -> None:
    transaction = Colliding(times=3)
    assert await connections._retrying_conflicts(transaction) == "written"
    gaps = [later - earlier for earlier, later in zip(transaction.tries, transaction.tries[1:], strict=False)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.01  # half of the first ceiling (20 ms) at least: never at once
    assert gaps[2] >= 0.04
    assert gaps[2] > gaps[0]


async def test_in_a_request_it_tries_until_its_deadline_then_raises_the_conflict() -> None:
    transaction = Colliding(times=None)
    started = time.monotonic()
    with request_deadline(1.0), pytest.raises(OperationFailure) as raised:
        await connections._retrying_conflicts(transaction)
    assert raised.value.code == 112  # the driver's error, which the gateway answers 503
    assert time.monotonic() - started < 1.0
    assert len(transaction.tries) > connections._TRANSACTION_ATTEMPTS  # more than the count outside a request


async def test_outside_a_request_it_gives_up_after_a_few_tries() -> None:
    transaction = Colliding(times=None)
    with pytest.raises(OperationFailure):
        await connections._retrying_conflicts(transaction)
    assert len(transaction.tries) == connections._TRANSACTION_ATTEMPTS


class Session:
    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.commits = 0

    async def commit_transaction(self) -> None:
        self.commits += 1
        if self.commits <= self.lost:
            raise unknown_commit()


async def test_a_commit_whose_answer_was_lost_is_sent_again() -> None:
    session = Session(lost=2)
    await connections._commit(session)  # type: ignore[arg-type]
    assert session.commits == 3


async def test_a_commit_still_unknown_at_the_deadline_raises() -> None:
    session: Any = Session(lost=10_000)
    with request_deadline(0.3), pytest.raises(OperationFailure) as raised:
        await connections._commit(session)
    assert raised.value.has_error_label("UnknownTransactionCommitResult")

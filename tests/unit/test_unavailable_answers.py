"""A database or broker that is away is a 503 with Retry-After in the error envelope, never a 500.

Every failure the fault runs of issue 15 met (and the driver's other ways of saying "not now"),
raised by a view behind the gateway's error middleware; a defect stays a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from auth_gateway.http.errors import RETRY_AFTER_SECONDS, error_middleware
from keyway_shared.bus import PublishError


def labelled(label: str, code: int = 0) -> OperationFailure:
    return OperationFailure("details the client must not see", code=code, details={"errorLabels": [label]})


class _PastTheDeadlineError(PyMongoError):
    """Any driver error that says it came from a timeout (``PyMongoError.timeout``), as CSOT's do."""

    @property
    def timeout(self) -> bool:
        return True


def timed_out() -> PyMongoError:
    return _PastTheDeadlineError("operation would exceed time limit")


UNAVAILABLE: dict[str, Callable[[], BaseException]] = {
    "AutoReconnect": lambda: AutoReconnect("connection reset"),
    "NetworkTimeout": lambda: NetworkTimeout("timed out"),
    "ServerSelectionTimeoutError": lambda: ServerSelectionTimeoutError("no servers"),
    "WaitQueueTimeoutError": lambda: WaitQueueTimeoutError("pool"),
    "ExecutionTimeout": lambda: ExecutionTimeout("maxTimeMS", code=50),
    "WriteConflict after retries": lambda: labelled("TransientTransactionError", code=112),
    "WriteConflict without label": lambda: OperationFailure("write conflict", code=112),
    "unknown commit result": lambda: labelled("UnknownTransactionCommitResult"),
    "past the CSOT deadline": timed_out,
    "NotWritablePrimary": lambda: OperationFailure("stepping down", code=10107),
    "broker: publish not confirmed": lambda: PublishError("broker not connected yet"),
    "broker: connection closed": lambda: aio_pika.exceptions.ConnectionClosed(320, "closed"),
    "broker: channel closed": lambda: aio_pika.exceptions.ChannelInvalidStateError("closed"),
}
DEFECTS: dict[str, Callable[[], BaseException]] = {
    "duplicate key": lambda: DuplicateKeyError("E11000", code=11000),
    "bad query": lambda: OperationFailure("unknown operator", code=2),
    "a bug": lambda: KeyError("x"),
}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[error_middleware])
    app[RETRY_AFTER_SECONDS] = 4
    raised: dict[str, Callable[[], BaseException]] = {**UNAVAILABLE, **DEFECTS}

    async def fail(request: web.Request) -> web.Response:
        raise raised[request.query["what"]]()

    app.router.add_get("/", fail)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize("what", list(UNAVAILABLE))
async def test_unavailability_is_a_503_with_retry_after(
    client: TestClient[web.Request, web.Application], what: str
) -> None:
    resp = await client.get("/", params={"what": what})
    body = await resp.json()
    assert resp.status == 503, body
    assert resp.headers["Retry-After"] == "4"
    assert body["type"] == "service_unavailable"
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["payload"] == {"retry_after": 4}
    assert "Retry in 4 s" in body["error"]["message"]
    assert "details" not in body["error"]["message"]
    assert "closed" not in body["error"]["message"]


@pytest.mark.parametrize("what", list(DEFECTS))
async def test_a_defect_stays_a_500(client: TestClient[web.Request, web.Application], what: str) -> None:
    resp = await client.get("/", params={"what": what})
    body = await resp.json()
    assert resp.status == 500
    assert body["error"]["code"] == "generic_error_support"

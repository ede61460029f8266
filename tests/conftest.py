"""Fixtures for the whole suite: the real RabbitMQ, a real MongoDB-wire server, unique names per test.

MongoDB: ``MONGODB_URL`` when set, else one embedded SecantusDB process for the session.
RabbitMQ: ``AMQP_URL`` (default guest@127.0.0.1:5672). Each test gets its own database and its own
bus namespace (exchange and queue prefix), and both are removed afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from keyway_shared.store import ensure_indexes

from .integration.gateway_app import StartGateway, running_gateway
from .integration.refresher_world import StartRefresherWorld, refresher_world
from .support.oauth_provider import OAuthProvider
from .support.procs import start_mongo

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` tests run only when selected with ``-m slow`` (the marker's promise in pyproject)."""
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("MONGODB_URL")
    if configured:
        yield configured
        return
    data_dir = tmp_path_factory.mktemp("mongo") / "data"
    data_dir.mkdir()
    proc, url = start_mongo(data_dir)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def db_name() -> str:
    return f"kwtest_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def mongo_client(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
async def db(mongo_client: AsyncMongoClient[dict[str, Any]], db_name: str) -> AsyncIterator[Any]:
    database = mongo_client[db_name]
    await ensure_indexes(database)
    yield database
    await drop_test_database(mongo_client, db_name)


async def drop_test_database(client: AsyncMongoClient[dict[str, Any]], name: str) -> None:
    """Drop a test's database on a server given by ``MONGODB_URL``; leave it on the embedded one.

    The embedded server lives for the session in a temporary directory that goes with it, so a
    drop there buys nothing, and its mass removals across the tables every database shares have
    been seen to stall that pre-release server (a WiredTiger page that never comes back in). On a
    server of your own the databases are removed, and a slow drop is given up on rather than
    failing the test that used it.
    """
    if not os.environ.get("MONGODB_URL"):
        return
    with contextlib.suppress(TimeoutError, PyMongoError):
        await asyncio.wait_for(client.drop_database(name), timeout=60)


@pytest.fixture
def namespace() -> str:
    return f"kwt{uuid.uuid4().hex[:10]}"


@pytest.fixture
def service_settings(mongo_url: str, db_name: str, amqp_url: str, namespace: str) -> dict[str, Any]:
    """The settings that put any of the services on this test's database and bus namespace (classic queues)."""
    return {
        "mongodb_url": mongo_url,
        "mongodb_database": db_name,
        "amqp_url": amqp_url,
        "bus_namespace": namespace,
        "queue_type": "classic",
    }


@pytest.fixture
async def amqp(amqp_url: str, namespace: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """A broker connection; every queue and exchange under this test's namespace is deleted afterwards."""
    connection = await aio_pika.connect_robust(amqp_url)
    yield connection
    await delete_namespace(amqp_url, namespace)
    await connection.close()


async def delete_namespace(amqp_url: str, namespace: str) -> None:
    from .support.rabbit import list_queues_and_exchanges

    queues, exchanges = list_queues_and_exchanges(namespace)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for name in queues:
            try:
                await channel.queue_delete(name)
            except aiormq.exceptions.ChannelLockedResource:
                # Exclusive to a connection still open (a gateway replica's cache queue, when the
                # gateway fixture closes after this one): it goes away with that connection.
                channel = await connection.channel()
        for name in exchanges:
            await channel.exchange_delete(name)
    finally:
        await connection.close()


@pytest.fixture
def encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def provider() -> AsyncIterator[OAuthProvider]:
    """An OAuth 2 provider on 127.0.0.1 (a file may override it with a provider of its own)."""
    server = await OAuthProvider().start()
    yield server
    await server.stop()


@pytest.fixture
def start_gateway(
    mongo_url: str,
    db_name: str,
    db: Any,
    amqp_url: str,
    namespace: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
    encryption_key: str,
) -> StartGateway:
    """``start_gateway(**settings)``: an in-process gateway on this test's database and bus namespace.

    Depends on ``db`` and ``amqp`` so that both are made ready before and cleaned after every
    gateway the test starts (and closes).
    """
    return functools.partial(
        running_gateway,
        mongo_url=mongo_url,
        db_name=db_name,
        amqp_url=amqp_url,
        namespace=namespace,
        encryption_key=encryption_key,
    )


@pytest.fixture
def start_refresher_world(
    start_gateway: StartGateway, service_settings: dict[str, Any], encryption_key: str, db: Any, tmp_path: Path
) -> StartRefresherWorld:
    """``start_refresher_world(**settings)``: a gateway, token-refresher and (``consumers=True``) webhook
    dispatcher and activity log on this test's database and bus namespace; see :func:`refresher_world`.
    """
    common = service_settings | {"encryption_key": encryption_key}
    return functools.partial(refresher_world, start_gateway, common, tmp_path, db)

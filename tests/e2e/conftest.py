"""Fixtures for end-to-end tests: the real stack as processes, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser

from ..conftest import delete_namespace, drop_test_database
from ..support.browser import chromium
from ..support.polling import eventually
from ..support.stack import Stack


@pytest.fixture
def stack(mongo_url: str, amqp_url: str, tmp_path: Path) -> Iterator[Stack]:
    the_stack = Stack(mongo_url=mongo_url, amqp_url=amqp_url, log_dir=tmp_path)
    yield the_stack
    the_stack.stop_all()


@pytest.fixture
async def cleanup_stack(stack: Stack, mongo_client: object) -> AsyncIterator[Stack]:
    """The stack, with its database and queues removed after the test."""
    yield stack
    stack.stop_all()
    await delete_namespace(stack.amqp_url, stack.namespace)
    await drop_test_database(mongo_client, stack.database)  # type: ignore[arg-type]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # As a browser's, its jar keeps cookies from 127.0.0.1 (aiohttp's default refuses IP hosts): an
    # OAuth flow's callback needs the cookie its connect request set.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def wait_ready(http: aiohttp.ClientSession, port: int, *, timeout: float = 30.0) -> None:
    async def ready() -> bool:
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, timeout=timeout, what=f"/readyz on {port}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched

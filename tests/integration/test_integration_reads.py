"""Concurrent integration reads share database commands, and never answer with what a finished
write replaced (``IntegrationStore.get`` on the real MongoDB-wire server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyway_shared.cipher import CredentialCipher, generate_key
from keyway_shared.store import Integration, IntegrationStore

from ..support.commands import CommandLog, logged_database


@pytest.fixture
async def counted(mongo_url: str, db: Any) -> AsyncIterator[tuple[IntegrationStore, CommandLog]]:
    async with logged_database(mongo_url, db.name) as (database, log):
        store = IntegrationStore(database, CredentialCipher(current_key=generate_key()))
        for environment, key, secret in (("dev", "gh", "s-gh"), ("dev", "slack", "s-sl"), ("prod", "gh", "s-prod")):
            await store.create(
                Integration(environment=environment, unique_key=key, provider=key, oauth_client_secret=secret)
            )
        log.started_commands.clear()
        yield store, log


def finds(log: CommandLog) -> list[dict[str, Any]]:
    return log.of("find", "integrations")


async def test_many_reads_of_one_integration_share_a_command(counted: tuple[IntegrationStore, CommandLog]) -> None:
    store, log = counted
    found = await asyncio.gather(*(store.get("dev", "gh") for _ in range(100)))
    assert all(i is not None and i.oauth_client_secret == "s-gh" for i in found)
    assert len({id(i) for i in found}) == 100  # each caller has its own object to edit
    # The first read goes alone; the 99 that arrived meanwhile share the next (at most 256 a batch).
    assert 1 <= len(finds(log)) <= 2


async def test_a_batch_of_keys_answers_each_its_own(counted: tuple[IntegrationStore, CommandLog]) -> None:
    store, log = counted
    asks = [("dev", "gh"), ("dev", "slack"), ("prod", "gh"), ("prod", "slack"), ("dev", "nope")] * 5
    found = await asyncio.gather(*(store.get(env, key) for env, key in asks))
    answers = [(i.environment, i.unique_key, i.oauth_client_secret) if i else None for i in found]
    expected = {
        ("dev", "gh"): ("dev", "gh", "s-gh"),
        ("dev", "slack"): ("dev", "slack", "s-sl"),
        ("prod", "gh"): ("prod", "gh", "s-prod"),
        ("prod", "slack"): None,
        ("dev", "nope"): None,
    }
    assert answers == [expected[ask] for ask in asks]
    assert len(finds(log)) <= 4  # one batch: one query per environment (the first read may go alone)


async def test_a_read_made_after_a_write_sees_it_though_reads_are_in_flight(
    counted: tuple[IntegrationStore, CommandLog],
) -> None:
    store, _ = counted
    for round_ in range(5):
        before = [asyncio.ensure_future(store.get("dev", "gh")) for _ in range(20)]
        await asyncio.sleep(0)  # the reads are out
        stored = await store.get("dev", "gh")
        assert stored is not None
        stored.oauth_scopes = f"scope-{round_}"
        assert await store.replace(stored)
        after = await asyncio.gather(*(store.get("dev", "gh") for _ in range(20)))
        assert {i.oauth_scopes for i in after if i is not None} == {f"scope-{round_}"}
        await asyncio.gather(*before)


async def test_a_deleted_integration_is_gone_for_reads_made_after(
    counted: tuple[IntegrationStore, CommandLog],
) -> None:
    store, _ = counted
    pending = [asyncio.ensure_future(store.get("dev", "slack")) for _ in range(10)]
    await asyncio.sleep(0)
    assert await store.delete("dev", "slack")
    assert await asyncio.gather(*(store.get("dev", "slack") for _ in range(10))) == [None] * 10
    await asyncio.gather(*pending)

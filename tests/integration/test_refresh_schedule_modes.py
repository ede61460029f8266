"""The refresher's ``connection.*`` handler reads a connection only when its auth mode can be
refreshed: an API-key or Basic connection has nothing to schedule (real MongoDB-wire server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import pytest

from keyway_shared.bus import MessageContext
from keyway_shared.credentials.shapes import CREDENTIAL_SHAPES
from keyway_shared.events import ConnectionCreated, utcnow
from keyway_shared.refresh.policy import NEVER_REFRESHED
from token_refresher.schedule import RefreshScheduler

from ..support.commands import CommandLog, logged_database
from ..support.inproc import event

pytestmark = [pytest.mark.mongo]

MARGIN = timedelta(minutes=15)


@pytest.fixture
async def world(mongo_url: str, db: Any) -> AsyncIterator[tuple[RefreshScheduler, CommandLog, Any]]:
    async with logged_database(mongo_url, db.name) as (database, log):
        yield RefreshScheduler(database, margin_for=lambda _provider: MARGIN), log, database


async def plant(db: Any, connection_id: str, auth_mode: str, *, expires_in: timedelta | None) -> None:
    now = utcnow()
    await db["connections"].insert_one(
        {
            "id": len(connection_id) * 1000 + ord(connection_id[0]),  # unique among the planted ones
            "environment": "dev",
            "provider_config_key": "k",
            "connection_id": connection_id,
            "provider": "p",
            "auth_mode": auth_mode,
            "credentials_expires_at": now + expires_in if expires_in else None,
            "credentials_obtained_at": now,
            "updated_at": now,
            "refresh_attempt": 0,
        }
    )


async def handle(scheduler: RefreshScheduler, connection_id: str, auth_mode: str) -> None:
    data = ConnectionCreated(connection_id=connection_id, provider_config_key="k", provider="p", auth_mode=auth_mode)  # type: ignore[arg-type]
    await scheduler.handle(event("connection.created", data), cast(MessageContext, None))


def test_the_modes_left_alone_hold_only_credentials_that_are_never_refreshed() -> None:
    for mode in NEVER_REFRESHED:
        assert not CREDENTIAL_SHAPES[mode].refreshable  # type: ignore[index]
    assert "CUSTOM" not in NEVER_REFRESHED  # its connections hold APP or OAUTH2 credentials


async def test_api_key_and_basic_connections_are_not_read(
    world: tuple[RefreshScheduler, CommandLog, Any],
) -> None:
    scheduler, log, db = world
    await plant(db, "key-1", "API_KEY", expires_in=None)
    await plant(db, "basic-1", "BASIC", expires_in=None)
    await plant(db, "oauth-1", "OAUTH2", expires_in=timedelta(hours=2))
    await plant(db, "custom-1", "CUSTOM", expires_in=timedelta(hours=1))
    for connection_id, mode in (
        ("key-1", "API_KEY"),
        ("basic-1", "BASIC"),
        ("oauth-1", "OAUTH2"),
        ("custom-1", "CUSTOM"),
    ):
        await handle(scheduler, connection_id, mode)
    assert [find["filter"]["connection_id"] for find in log.of("find", "connections")] == ["oauth-1", "custom-1"]
    # The refreshed modes are scheduled as before.
    for connection_id in ("oauth-1", "custom-1"):
        doc = await db["connections"].find_one({"connection_id": connection_id})
        assert doc["refresh_due_at"] is not None
        assert doc["refresh_due_at"] < doc["credentials_expires_at"]

"""Each refresh failure class, driven through the token-refresher's background loop, with what it
must produce: the auth webhook at a real receiver (via the webhook dispatcher), the activity-log
entry (operation ``auth:refresh_token``), and the state on the connection.

- refused (``invalid_grant``): marked failed, webhook ``operation: refresh, success: false``,
  retried once a day; a later success sends ``success: true`` (recovered) and heals the connection;
- exhausted after four failing days: left alone (no due time), the webhook says so;
- transient (429 with Retry-After, 5xx): backed off, never marked failed, no webhook;
- bad data (a template without a token URL, undecryptable credentials): marked failed with a clear
  reason, and the loop goes on refreshing the others.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyway_shared.events import utcnow

from ..support.polling import eventually
from .refresher_world import StartRefresherWorld, World

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def world(start_refresher_world: StartRefresherWorld) -> AsyncIterator[World]:
    async with start_refresher_world(
        consumers=True,
        refresh_max_sleep_seconds=1.0,
        templates={"no-token-url": {"auth_mode": "OAUTH2", "authorization_url": "http://127.0.0.1:9/authorize"}},
    ) as the_world:
        yield the_world


def refresh_hooks(world: World, connection_id: str) -> list[dict[str, Any]]:
    assert world.receiver is not None
    bodies = [json.loads(r.body) for r in world.receiver.received]
    return [b for b in bodies if b.get("operation") == "refresh" and b.get("connectionId") == connection_id]


async def wait_hooks(world: World, connection_id: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        hooks = refresh_hooks(world, connection_id)
        return hooks if len(hooks) >= count else None

    return await eventually(enough, timeout=20, what=f"{count} refresh webhook(s) for {connection_id}")


async def activity(world: World, connection_id: str, state: str, count: int = 1) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        cursor = world.db["activity_operations"].find(
            {"environment": "dev", "connection_id": connection_id, "type": "auth:refresh_token", "state": state}
        )
        docs = [doc async for doc in cursor]
        return docs if len(docs) >= count else None

    return await eventually(found, timeout=20, what=f"auth:refresh_token {state} entry for {connection_id}")


async def messages(world: World, operation_id: str) -> list[str]:
    cursor = world.db["activity_messages"].find({"operation_id": operation_id})
    return [str(doc.get("message")) async for doc in cursor]


async def a_message_says(world: World, operation_id: str, text: str) -> bool:
    """An operation's messages may be stored after the operation itself (the activity log writes them
    in batches of their own): wait for one that says ``text``."""

    async def said() -> bool:
        return any(text in message for message in await messages(world, operation_id))

    await eventually(said, timeout=20, what=f"an activity message saying {text!r}")
    return True


async def make_due(world: World, connection_id: str) -> None:
    await world.db["connections"].update_one(
        {"connection_id": connection_id}, {"$set": {"refresh_due_at": utcnow() - timedelta(seconds=1)}}
    )


async def test_refused_refresh_token_fails_once_a_day_and_a_later_success_recovers(world: World) -> None:
    world.provider.token_mode = "invalid_grant"
    await world.import_connection("refused", expires_in=2)
    (hook,) = await wait_hooks(world, "refused", 1)
    assert hook["success"] is False
    assert hook["error"]["type"] == "refresh_token_external_error"
    assert hook["authMode"] == "OAUTH2"
    assert hook["providerConfigKey"] == "oauth"
    doc = await world.doc("refused")
    assert doc["refresh_failed"] is True
    assert doc["refresh_failed_days"] == 1
    assert doc["refresh_exhausted"] is False
    assert doc["refresh_error"]["type"] == "invalid_grant"
    # Retried once a day, not in the next round.
    assert timedelta(hours=23) < doc["refresh_due_at"] - utcnow() <= timedelta(days=1)
    (failed,) = await activity(world, "refused", "failed")
    assert failed["error"]["type"] == "refresh_token_external_error"
    assert await a_message_says(world, failed["_id"], "Token refresh failed")
    refused_requests = sum(1 for r in world.provider.token_requests if r.get("grant_type") == "refresh_token")
    assert refused_requests == 1

    # The provider takes the token again the next day: the success is announced as a recovery.
    world.provider.token_mode = "ok"
    await make_due(world, "refused")
    hooks = await wait_hooks(world, "refused", 2)
    assert hooks[1]["success"] is True
    assert "error" not in hooks[1]
    (healed,) = await activity(world, "refused", "success")
    assert await a_message_says(world, healed["_id"], "recovered")
    doc = await world.doc("refused")
    assert doc["refresh_failed"] is False
    assert doc["refresh_error"] is None
    assert doc["refresh_due_at"] > utcnow()
    assert world.provider.reuse_detected == 0


async def test_four_failing_days_exhaust_the_connection(world: World) -> None:
    world.provider.token_mode = "invalid_grant"
    await world.import_connection("tired", expires_in=600)
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    await world.db["connections"].update_one(
        {"connection_id": "tired"},
        {
            "$set": {
                "refresh_failed": True,
                "refresh_failed_days": 3,
                "refresh_last_failed_day": yesterday,
                "refresh_attempt": 3,
                "refresh_due_at": utcnow() - timedelta(seconds=1),
            }
        },
    )
    (hook,) = await wait_hooks(world, "tired", 1)
    assert hook["success"] is False
    doc = await world.doc("tired")
    assert doc["refresh_exhausted"] is True
    assert doc["refresh_failed_days"] == 4
    assert doc["refresh_due_at"] is None  # left alone until the user reconnects
    (failed,) = await activity(world, "tired", "failed")
    assert await a_message_says(world, failed["_id"], "no further automatic attempts")


async def test_transient_failures_back_off_honouring_retry_after(world: World) -> None:
    world.provider.token_mode = "rate_limited"
    world.provider.retry_after = 120
    await world.import_connection("busy", expires_in=4)  # due in 2 s
    before = await world.doc("busy")

    async def backed_off() -> dict[str, Any] | None:
        doc = await world.doc("busy")
        return doc if doc.get("refresh_attempt") == 1 else None

    doc = await eventually(backed_off, timeout=15, what="the 429 to be recorded")
    assert timedelta(seconds=110) < doc["refresh_due_at"] - utcnow() <= timedelta(seconds=120)  # Retry-After won
    assert doc["refresh_failed"] is False
    assert doc["refresh_error"]["type"] == "token_provider_unavailable"
    assert doc["credentials_enc"] == before["credentials_enc"]  # the current token stays in use
    assert (await world.credentials("busy"))["access_token"]  # and is still handed out

    # A 5xx without Retry-After: the schedule's own backoff (second attempt: 20 s).
    world.provider.token_mode = "error_500"
    await make_due(world, "busy")

    async def second() -> dict[str, Any] | None:
        doc = await world.doc("busy")
        return doc if doc.get("refresh_attempt") == 2 else None

    doc = await eventually(second, timeout=10, what="the 503 to be recorded")
    assert timedelta(seconds=15) < doc["refresh_due_at"] - utcnow() <= timedelta(seconds=20)
    assert doc["refresh_failed"] is False
    assert refresh_hooks(world, "busy") == []  # transient failures are not announced


async def test_bad_data_is_parked_with_a_reason_and_the_loop_goes_on(world: World) -> None:
    # A template without a token URL.
    await world.import_connection("no-url", expires_in=2, key="no-token-url")
    (hook,) = await wait_hooks(world, "no-url", 1)
    assert hook["success"] is False
    assert "token URL" in hook["error"]["description"]
    doc = await world.doc("no-url")
    assert doc["refresh_failed"] is True
    assert doc["refresh_error"]["type"] == "missing_token_url"
    await activity(world, "no-url", "failed")

    # Undecryptable credentials: another connection's ciphertext (bound to that connection) pasted in.
    await world.import_connection("donor", expires_in=600)
    await world.import_connection("garbled", expires_in=4)  # due in 2 s
    donor = await world.doc("donor")
    await world.db["connections"].update_one(
        {"connection_id": "garbled"}, {"$set": {"credentials_enc": donor["credentials_enc"]}}
    )

    async def parked() -> dict[str, Any] | None:
        doc = await world.doc("garbled")
        return doc if doc.get("refresh_failed") else None

    doc = await eventually(parked, timeout=10, what="the undecryptable connection to be marked failed")
    assert doc["refresh_error"]["type"] == "invalid_stored_credentials"
    assert "cannot be decrypted" in doc["refresh_error"]["description"]
    assert doc["refresh_due_at"] is None
    # The app is told, once: the connection will not refresh until the user reconnects.
    (hook,) = await wait_hooks(world, "garbled", 1)
    assert hook["success"] is False
    assert hook["error"]["type"] == "invalid_stored_credentials"
    assert "reconnect" in hook["error"]["description"]
    # Scheduled again by mistake: parked again, not announced again.
    await world.db["connections"].update_one(
        {"connection_id": "garbled"}, {"$set": {"refresh_due_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )

    async def parked_again() -> bool:
        return (await world.doc("garbled")).get("refresh_due_at") is None

    await eventually(parked_again, timeout=10, what="the connection to be parked again")

    # The loop goes on: a healthy connection is refreshed as usual.
    await world.import_connection("healthy", expires_in=2)

    async def refreshed() -> bool:
        return world.refreshes_of("healthy") >= 1

    await eventually(refreshed, timeout=10, what="the healthy connection to be refreshed")
    assert (await world.doc("healthy"))["refresh_failed"] is False
    assert len(refresh_hooks(world, "garbled")) == 1

"""Refresh on read: ``force_refresh``, a token past its due time, single flight under concurrency,
the old refresh token kept when the provider sends none, and failures without leaking anything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..support.oauth_provider import OAuthProvider
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .test_gateway_api import assert_envelope
from .test_oauth2_flow import run_flow

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"test-oauth2": provider.template()}),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        # These tests move due times in the database behind the gateway's back (time passing, in
        # effect), which no Keyway writer does: the connection cache would rightly not hear of it.
        connection_cache_entries=0,
    ) as gateway:
        await create_integration(gateway, "test-oauth2", "oauth", **provider.integration_fields)
        yield gateway


async def credentials(gw: Gateway, connection_id: str, *, force: bool = False) -> tuple[int, dict[str, Any]]:
    flags = "&force_refresh=true" if force else ""
    resp = await gw.client.get(
        f"/connection/{connection_id}?provider_config_key=oauth&refresh_token=true{flags}", headers=gw.auth
    )
    return resp.status, await resp.json()


async def test_force_refresh_and_due_refresh(gw: Gateway, provider: OAuthProvider, db: Any) -> None:
    _resp, _html, frame = await run_flow(gw, provider, "oauth", "connection_id=r-1")
    assert frame["message_type"] == "success"
    status, before = await credentials(gw, "r-1")
    assert status == 200
    status, after = await credentials(gw, "r-1")
    assert after["credentials"]["access_token"] == before["credentials"]["access_token"]  # not due: untouched
    status, forced = await credentials(gw, "r-1", force=True)
    assert status == 200
    assert forced["credentials"]["access_token"] != before["credentials"]["access_token"]
    assert forced["credentials"]["refresh_token"] != before["credentials"]["refresh_token"]  # rotated
    assert provider.token_requests[-1]["grant_type"] == "refresh_token"

    # past its due time, a plain read refreshes
    await db["connections"].update_one(
        {"connection_id": "r-1"}, {"$set": {"refresh_due_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    status, due = await credentials(gw, "r-1")
    assert due["credentials"]["access_token"] != forced["credentials"]["access_token"]
    doc = await db["connections"].find_one({"connection_id": "r-1"})
    assert doc["refresh_due_at"] > datetime.now(UTC)  # rescheduled


async def test_concurrent_forced_reads_refresh_once(gw: Gateway, provider: OAuthProvider) -> None:
    await run_flow(gw, provider, "oauth", "connection_id=r-2")
    before = sum(1 for r in provider.token_requests if r["grant_type"] == "refresh_token")
    results = await asyncio.gather(*(credentials(gw, "r-2", force=True) for _ in range(8)))
    assert all(status == 200 for status, _ in results)
    refreshes = sum(1 for r in provider.token_requests if r["grant_type"] == "refresh_token") - before
    assert 1 <= refreshes <= 8
    assert provider.reuse_detected == 0  # no refresh token was ever spent twice
    tokens = {body["credentials"]["access_token"] for _, body in results}
    _status, final = await credentials(gw, "r-2")
    assert final["credentials"]["access_token"] in tokens  # everyone got a token that is (or was) current


async def test_refresh_keeps_old_refresh_token_when_none_is_returned(gw: Gateway, provider: OAuthProvider) -> None:
    provider.rotate_refresh_tokens = False
    await run_flow(gw, provider, "oauth", "connection_id=r-3")
    _status, first = await credentials(gw, "r-3")
    _status, forced = await credentials(gw, "r-3", force=True)
    assert forced["credentials"]["refresh_token"] == first["credentials"]["refresh_token"]
    assert forced["credentials"]["access_token"] != first["credentials"]["access_token"]


async def test_refused_refresh_is_reported_without_secrets(
    gw: Gateway, provider: OAuthProvider, amqp: Any, namespace: str, db: Any
) -> None:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", "topic", durable=True)
    watch = await channel.declare_queue(f"{namespace}.test.token-events", auto_delete=True)
    await watch.bind(exchange, routing_key="token.*")
    await run_flow(gw, provider, "oauth", "connection_id=r-4")
    _status, good = await credentials(gw, "r-4")
    provider.token_mode = "invalid_grant"
    status, body = await credentials(gw, "r-4", force=True)
    assert status == 400
    assert_envelope(body, "refresh_token_external_error")
    text = json.dumps(body)
    assert good["credentials"]["refresh_token"] not in text
    assert good["credentials"]["access_token"] not in text
    doc = await db["connections"].find_one({"connection_id": "r-4"})
    assert doc["refresh_failed"] is True
    assert doc["refresh_failed_days"] == 1
    message = await watch.get(timeout=10)
    event = json.loads(message.body)
    assert event["type"] == "token.refresh_failed"
    assert event["data"]["error"]["type"] == "refresh_token_external_error"
    assert good["credentials"]["refresh_token"] not in message.body.decode()
    # A second forced refresh the same day is still tried but counts the same day once.
    status, _body = await credentials(gw, "r-4", force=True)
    doc = await db["connections"].find_one({"connection_id": "r-4"})
    assert doc["refresh_failed_days"] == 1
    # The provider recovers: the next refresh succeeds and is announced as a recovery.
    provider.token_mode = "ok"
    status, healed = await credentials(gw, "r-4", force=True)
    assert status == 200, healed
    doc = await db["connections"].find_one({"connection_id": "r-4"})
    assert doc["refresh_failed"] is False
    kinds = []
    while (message := await watch.get(no_ack=True, fail=False)) is not None:
        kinds.append((json.loads(message.body)["type"], json.loads(message.body)["data"].get("recovered")))
    assert ("token.refreshed", True) in kinds


async def test_transient_failure_keeps_a_valid_token_usable(gw: Gateway, provider: OAuthProvider, db: Any) -> None:
    await run_flow(gw, provider, "oauth", "connection_id=r-5")
    _status, before = await credentials(gw, "r-5")
    await db["connections"].update_one(
        {"connection_id": "r-5"}, {"$set": {"refresh_due_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    provider.token_mode = "error_500"
    status, body = await credentials(gw, "r-5")
    assert status == 200  # the token has not expired: it is still handed out
    assert body["credentials"]["access_token"] == before["credentials"]["access_token"]
    doc = await db["connections"].find_one({"connection_id": "r-5"})
    assert doc["refresh_attempt"] == 1
    assert doc["refresh_due_at"] > datetime.now(UTC)  # backed off
    assert doc["refresh_failed"] is False  # transient failures do not mark the connection failed

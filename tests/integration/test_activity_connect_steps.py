"""A connect attempt told step by step in the activity log: the gateway publishes the steps of the
OAuth popup (authorization URL, callback, token request and answer), the activity-log service
nests them under one operation, nothing secret is stored, and an attempt nobody finishes ends as
``timeout``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from activity_log.app import create_app
from activity_log.settings import ActivityLogSettings

from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from .flow_helpers import run_popup
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(
    provider: OAuthProvider,
    tmp_path: Path,
    start_gateway: StartGateway,
    service_settings: dict[str, Any],
) -> AsyncIterator[Gateway]:
    settings = ActivityLogSettings(
        **service_settings, batch_delay_ms=20, connect_timeout_seconds=1.5, timeout_sweep_seconds=0.25
    )
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"test-oauth2": provider.template()}),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        await create_integration(
            gateway, "test-oauth2", "oauth", **provider.integration_fields, oauth_scopes="read,write"
        )
        async with running(create_app(settings)):
            yield gateway


async def operation_of(gw: Gateway, connection_id: str, state: str, messages: int) -> dict[str, Any]:
    """The connect attempt for ``connection_id`` once it is in ``state`` with ``messages`` messages, over /logs."""

    async def probe() -> dict[str, Any] | None:
        resp = await gw.client.get(f"/logs/operations?connection={connection_id}", headers=gw.auth)
        listed = (await resp.json())["data"]
        if not listed or listed[0]["state"] != state:
            return None
        resp = await gw.client.get(f"/logs/operations/{listed[0]['id']}", headers=gw.auth)
        one: dict[str, Any] = (await resp.json())["data"]
        return one if len(one["messages"]) >= messages else None

    return await eventually(probe, timeout=30, what=f"the attempt for {connection_id} to be {state}")


async def everything_stored(db: Any) -> str:
    docs = [doc for name in ("activity_operations", "activity_messages") for doc in await db[name].find({}).to_list()]
    return json.dumps(docs, default=str)


async def test_an_oauth_popup_is_told_step_by_step_without_secrets(
    gw: Gateway, provider: OAuthProvider, db: Any
) -> None:
    result = await run_popup(gw, "oauth", "connection_id=user-1")
    assert result.frame["message_type"] == "success"
    op = await operation_of(gw, "user-1", "success", 4)
    assert (op["type"], op["provider_config_key"], op["provider"]) == ("auth:create_connection", "oauth", "test-oauth2")
    steps = op["messages"]
    assert [m["message"] for m in steps[:2]] == [
        "Authorization URL built; sending the user to test-oauth2",
        "Received the callback from test-oauth2",
    ]
    assert steps[2]["message"].startswith("Token request answered in ")
    assert steps[3]["message"] == "Connection created"
    authorize, callback, token = (m["request"] for m in steps[:3])
    assert authorize["method"] == "GET"
    assert authorize["url"].startswith(f"{provider.base}/authorize?")
    assert "code_challenge_method=S256" in authorize["url"]
    assert "code=[REDACTED]" in callback["url"]
    assert "state=" in callback["url"]
    assert token["method"] == "POST"
    assert token["url"] == f"{provider.base}/token"
    assert token["duration_ms"] > 0
    body = json.loads(token["body"])
    assert body["access_token"] == body["refresh_token"] == "[REDACTED]"
    assert body["expires_in"] == 3600
    assert steps[2]["meta"] == {"grant_type": "authorization_code", "pkce": True}
    assert op["duration_ms"] is not None
    assert op["ended_at"] >= op["started_at"]

    request = provider.token_requests[-1]
    secrets = [
        provider.client_secret,
        request["code"],
        request["code_verifier"],
        *provider.access_tokens,
        *(token for grant in provider.grants.values() for token in grant.refresh_tokens),
    ]
    stored = await everything_stored(db)
    for secret in secrets:
        assert secret not in stored


async def test_a_refused_token_request_is_told_with_its_answer(gw: Gateway, provider: OAuthProvider, db: Any) -> None:
    provider.token_mode = "error_400"
    result = await run_popup(gw, "oauth", "connection_id=user-2")
    assert result.frame["message_type"] == "error"
    op = await operation_of(gw, "user-2", "failed", 4)
    assert op["error"]["type"] == "token_err"
    failed = next(m for m in op["messages"] if m["message"].startswith("Token request failed"))
    assert failed["level"] == "error"
    assert (failed["request"]["status"], failed["request"]["method"]) == (400, "POST")
    assert op["messages"][-1]["level"] == "error"  # the auth.failed that ended it
    assert provider.token_requests[-1]["code"] not in await everything_stored(db)


async def test_an_attempt_nobody_finishes_ends_as_timeout(gw: Gateway, db: Any) -> None:
    resp = await gw.client.get(
        f"/oauth/connect/oauth?connection_id=user-3&public_key={gw.public_key}", allow_redirects=False
    )
    assert resp.status == 302  # the user went to the provider and never came back
    op = await operation_of(gw, "user-3", "timeout", 2)
    assert op["error"]["type"] == "timeout"
    assert [m["level"] for m in op["messages"]] == ["info", "error"]
    assert op["messages"][1]["message"].startswith("Timed out")
    resp = await gw.client.get("/logs/operations?state=timeout&search=timed", headers=gw.auth)
    assert [o["id"] for o in (await resp.json())["data"]] == [op["id"]]

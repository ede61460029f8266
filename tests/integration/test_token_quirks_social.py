"""Instagram, Threads, TikTok Ads and Slack through the gateway, against fakes that answer as each
documents: the catalog's real entries (only their origins moved to 127.0.0.1) connect with the
right credentials and expiry, and the shared refresh renews what can be renewed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..support.quirky_providers import FakeMeta, FakeSlack, FakeTikTokAds
from .flow_helpers import run_popup
from .gateway_app import StartGateway, create_integration
from .test_token_quirks import connect, expires_in, gateway_for, refresh

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

SIXTY_DAYS = 5183944  # what Meta's long-lived exchange answers


@pytest.mark.parametrize(("provider", "prefix"), [("instagram", "ig"), ("threads", "th")])
async def test_meta_long_lived_tokens(
    start_gateway: StartGateway, tmp_path: Path, db: Any, provider: str, prefix: str
) -> None:
    meta = FakeMeta(prefix=prefix)
    await meta.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {provider: meta}) as gw:
            connection = await connect(gw, provider, "m-1")
            credentials = connection["credentials"]
            exchange = meta.token_requests("/access_token")[-1]
            assert exchange["grant_type"] == f"{prefix}_exchange_token"
            assert exchange["client_secret"] == meta.client_secret
            # The short-lived token was traded, and is neither stored nor kept anywhere.
            assert credentials["access_token"].startswith(f"{prefix.upper()}L")
            assert exchange["access_token"] not in json.dumps(connection)
            assert "refresh_token" not in credentials
            assert SIXTY_DAYS - 10 < expires_in(credentials) <= SIXTY_DAYS
            assert credentials["raw"]["user_id"] == 17841400000000001  # from the code exchange, kept
            doc = await db["connections"].find_one({"connection_id": "m-1"})
            due = doc["refresh_due_at"].replace(tzinfo=UTC)
            expected = datetime.now(UTC) + timedelta(seconds=SIXTY_DAYS) - timedelta(days=7)
            assert abs((due - expected).total_seconds()) < 15  # a week ahead (token_expiration_buffer)

            # Meta renews a long-lived token only once it is a day old.
            status, body = await refresh(gw, provider, "m-1")
            assert status == 400, body
            assert "too new to be refreshed" in json.dumps(body)  # Meta's reason, read from its error shape
            assert credentials["access_token"] not in json.dumps(body)
            meta.age_tokens(2 * 86400)
            status, body = await refresh(gw, provider, "m-1")
            assert status == 200, body
            renewal = meta.token_requests("/refresh_access_token")[-1]
            assert renewal["grant_type"] == f"{prefix}_refresh_token"
            assert renewal["access_token"] == credentials["access_token"]  # the token renews itself
            assert "client_secret" not in renewal
            renewed = body["credentials"]
            assert renewed["access_token"] != credentials["access_token"]
            assert SIXTY_DAYS - 10 < expires_in(renewed) <= SIXTY_DAYS
            assert renewed["raw"]["user_id"] == 17841400000000001
            doc = await db["connections"].find_one({"connection_id": "m-1"})
            assert doc["refresh_failed"] is False  # healed
    finally:
        await meta.stop()


async def test_meta_failed_long_lived_exchange_fails_the_connection(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    meta = FakeMeta(prefix="ig")
    await meta.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {"instagram": meta}) as gw:
            meta.refuse_exchange = True  # the code exchange passes, the trade does not
            result = await run_popup(gw, "instagram", "connection_id=m-2")
            assert result.frame["message_type"] == "error", result.frame
            assert meta.token_requests("/access_token")  # it was tried
            resp = await gw.client.get("/connection/m-2?provider_config_key=instagram", headers=gw.auth)
            assert resp.status == 404  # no connection that would die within the hour
    finally:
        await meta.stop()


async def test_tiktok_ads_json_exchange(start_gateway: StartGateway, tmp_path: Path) -> None:
    tiktok = FakeTikTokAds()
    await tiktok.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {"tiktok-ads": tiktok}) as gw:
            connection = await connect(gw, "tiktok-ads", "tt-1")
            exchange = tiktok.token_requests("/open_api/v1.3/oauth2/access_token/")[-1]
            assert exchange["headers"]["Content-Type"].startswith("application/json")
            assert {k: exchange[k] for k in ("app_id", "secret")} == {
                "app_id": tiktok.client_id,
                "secret": tiktok.client_secret,
            }
            assert exchange["auth_code"]
            credentials = connection["credentials"]
            assert credentials["access_token"]
            assert credentials["raw"]["advertiser_ids"] == ["7012345678901234567"]
            assert "expires_at" not in credentials  # long-lived
            assert "refresh_token" not in credentials

            # TikTok's errors come with HTTP 200 and a non-zero code.
            await create_integration(
                gw, "tiktok-ads", "tiktok-bad", oauth_client_id=tiktok.client_id, oauth_client_secret="not-the-secret"
            )
            result = await run_popup(gw, "tiktok-bad", "connection_id=tt-2")
            assert result.frame["message_type"] == "error", result.frame
            assert "40001" in json.dumps(result.frame)
            assert "not-the-secret" not in json.dumps(result.frame) + result.html
    finally:
        await tiktok.stop()


async def test_slack_rotating_bot_and_user_tokens(start_gateway: StartGateway, tmp_path: Path) -> None:
    slack = FakeSlack()
    await slack.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {"slack": slack}) as gw:
            connection = await connect(gw, "slack", "s-1")
            credentials = connection["credentials"]
            assert credentials["access_token"].startswith("xoxe.xoxb-")  # the bot's
            user = credentials["raw"]["authed_user"]
            assert user["access_token"].startswith("xoxe.xoxp-")
            assert credentials["refresh_token"] != user["refresh_token"]
            assert 39990 < expires_in(credentials) <= 40000  # the first of the two to expire
            assert connection["connection_config"]["team.id"] == "T1"

            status, body = await refresh(gw, "slack", "s-1")
            assert status == 200, body
            renewals = slack.token_requests("/api/oauth.v2.access")[-2:]
            assert [r["refresh_token"] for r in renewals] == [credentials["refresh_token"], user["refresh_token"]]
            renewed = body["credentials"]
            assert renewed["access_token"].startswith("xoxe.xoxb-")
            assert renewed["access_token"] != credentials["access_token"]
            assert renewed["raw"]["authed_user"]["access_token"] != user["access_token"]
            assert 39990 < expires_in(renewed) <= 40000

            # The user token's refresh fails: the bot's new token is stored all the same, and the
            # user's old one kept, with the expiry that brings the next try soon.
            slack.user_refresh = "fail"
            status, body = await refresh(gw, "slack", "s-1")
            assert status == 200, body
            again = body["credentials"]
            assert again["access_token"] != renewed["access_token"]
            kept = again["raw"]["authed_user"]
            assert kept["access_token"] == renewed["raw"]["authed_user"]["access_token"]
            assert kept["expires_at"] == renewed["expires_at"]
            assert again["expires_at"] == renewed["expires_at"]  # the kept user token's, not 12 fresh hours
    finally:
        await slack.stop()


async def test_slack_user_token_only_install(start_gateway: StartGateway, tmp_path: Path) -> None:
    slack = FakeSlack(install="user_only")
    await slack.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {"slack": slack}) as gw:
            connection = await connect(gw, "slack", "s-2")
            credentials = connection["credentials"]
            assert credentials["access_token"] == credentials["raw"]["authed_user"]["access_token"]
            assert credentials["refresh_token"] == credentials["raw"]["authed_user"]["refresh_token"]
            assert 39990 < expires_in(credentials) <= 40000
            before = len(slack.token_requests("/api/oauth.v2.access"))
            status, body = await refresh(gw, "slack", "s-2")
            assert status == 200, body
            assert len(slack.token_requests("/api/oauth.v2.access")) == before + 1  # spent once
            renewed = body["credentials"]
            assert renewed["access_token"].startswith("xoxe.xoxp-")
            assert renewed["access_token"] != credentials["access_token"]
            assert renewed["refresh_token"] != credentials["refresh_token"]
    finally:
        await slack.stop()

"""The token-refresher re-mints TWO_STEP tokens in the background before they expire: the stored
fields are exchanged again (or the refresh token spent, where the template has a refresh request),
and the proxy's upstream accepts only the newest token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ..support.polling import eventually
from ..support.two_step_provider import TwoStepProvider, two_step_provider
from .refresher_world import StartRefresherWorld, World

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def fake() -> AsyncIterator[TwoStepProvider]:
    async with two_step_provider() as provider:
        provider.lifetime_seconds = 3
        yield provider


@pytest.fixture
async def world(start_refresher_world: StartRefresherWorld, fake: TwoStepProvider) -> AsyncIterator[World]:
    template: dict[str, Any] = {
        "auth_mode": "TWO_STEP",
        "token_url": f"{fake.base}/login",
        "refresh_url": f"{fake.base}/refresh",
        "token_params": {"username": "${credentials.username}", "password": "${credentials.password}"},
        "refresh_token_params": {"refresh_token": "${refresh_token}"},
        "token_response": {
            "token": "data.accessToken",
            "token_expiration": "data.expiresIn",
            "token_expiration_strategy": "expireIn",
            "refresh_token": "refreshToken",
        },
        "proxy": {"base_url": fake.base},
    }
    async with start_refresher_world(templates={"test-two-step": template}) as the_world:
        yield the_world


async def test_the_refresher_re_mints_before_expiry(world: World, fake: TwoStepProvider) -> None:
    gw = world.gw
    body = {"type": "TWO_STEP", "username": fake.username, "password": fake.password}
    resp = await gw.client.post(
        f"/auth/two-step/test-two-step?connection_id=bg-1&public_key={gw.public_key}", json=body
    )
    assert resp.status == 200, await resp.text()

    async def refreshed_twice() -> bool:
        return sum(1 for request in fake.requests if request["path"] == "/refresh") >= 2

    await eventually(refreshed_twice, timeout=20, what="the refresher to spend the refresh token twice")
    resp = await gw.client.get("/connection/bg-1?provider_config_key=test-two-step", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert credentials["token"] != "tok-1"
    assert (credentials["username"], credentials["password"]) == (fake.username, fake.password)
    fake.live.discard("tok-1")  # the first token is long expired: only the re-minted one may pass
    headers = {**gw.auth, "Connection-Id": "bg-1", "Provider-Config-Key": "test-two-step"}
    resp = await gw.client.get("/proxy/api/me", headers=headers)
    assert resp.status == 200, await resp.text()
    proxied = (await resp.json())["token"]
    # The token lives 3 s, so the refresher may re-mint once more between the read and the proxy
    # call: the proxy must send the token read or a newer one, never an older one.
    assert _number(proxied) >= _number(credentials["token"]) > 1
    assert [r["path"] for r in fake.requests].count("/login") == 1  # minted once, then refreshed


def _number(token: str) -> int:
    """The fake numbers its tokens in the order it mints them: ``tok-3`` is the third."""
    return int(token.removeprefix("tok-"))

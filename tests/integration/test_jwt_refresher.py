"""The token-refresher re-signs a JWT connection's token before it expires, with no call to the
provider (signing is local), and the proxy sends the new token: a Ghost-like template whose tokens
live four seconds, against the provider on 127.0.0.1 that checks each one with the shared secret."""

from __future__ import annotations

import pytest

from ..support.polling import eventually
from ..support.signed_token_provider import SignedTokenProvider, decode_jwt
from .flow_helpers import get_connection
from .refresher_world import StartRefresherWorld

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


async def test_the_refresher_signs_a_new_token_before_the_old_one_expires(
    start_refresher_world: StartRefresherWorld,
) -> None:
    provider = await SignedTokenProvider().start()
    try:
        template = provider.templates()["test-ghost-admin"]
        template["token"] = {**template["token"], "expires_in_ms": 4000}
        async with start_refresher_world(templates={"test-ghost-admin": template}) as world:
            gw = world.gw
            query = f"connection_id=g-r&public_key={gw.public_key}&params[version]=v5.0"
            resp = await gw.client.post(
                f"/auth/jwt/test-ghost-admin?{query}", json={"privateKey": provider.ghost_api_key}
            )
            assert resp.status == 200, (await resp.text(), provider.rejected)
            first = (await get_connection(gw, "g-r", "test-ghost-admin"))["credentials"]
            sealed = (await world.db["connections"].find_one({"connection_id": "g-r"}))["credentials_enc"]

            async def rewritten() -> bool:
                stored = await world.db["connections"].find_one({"connection_id": "g-r"})
                return bool(stored["credentials_enc"] != sealed)

            # Due halfway through its four seconds; the refresher renews it (the probe reads the
            # database, not GET /connection, which would renew it on read).
            await eventually(rewritten, timeout=10, what="the refresher's new token")
            second = (await get_connection(gw, "g-r", "test-ghost-admin"))["credentials"]
            assert second["token"] != first["token"]
            assert decode_jwt(second["token"])[1]["exp"] > decode_jwt(first["token"])[1]["exp"]
            assert second["privateKey"] == first["privateKey"]
            assert len(provider.accepted["ghost"]) == 1  # only the connect-time check: signing asks no one
            headers = {**gw.auth, "Connection-Id": "g-r", "Provider-Config-Key": "test-ghost-admin"}
            resp = await gw.client.get("/proxy/users/", headers=headers)
            assert resp.status == 200, (await resp.text(), provider.rejected)
    finally:
        await provider.stop()

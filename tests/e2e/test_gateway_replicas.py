"""Two gateway processes: the socket is open on one, the OAuth callback lands on the other, and the
result still reaches the socket (routed through RabbitMQ)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from ..support.oauth_provider import OAuthProvider
from ..support.stack import Stack
from .conftest import wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]


async def test_callback_on_another_replica_reaches_the_socket(
    cleanup_stack: Stack, http: aiohttp.ClientSession, tmp_path: Path, mongo_client: Any
) -> None:
    provider = await OAuthProvider().start()
    try:
        providers_file = tmp_path / "providers.yaml"
        providers_file.write_text(yaml.safe_dump({"test-oauth2": provider.template()}))
        stack = cleanup_stack
        stack.extra_env = {"KEYWAY_PROVIDERS_FILE": str(providers_file)}
        first = stack.start("auth_gateway")
        second = stack.start("auth_gateway")
        assert first.port is not None
        assert second.port is not None
        for gateway in (first, second):
            await wait_ready(http, gateway.port)  # type: ignore[arg-type]
        one, two = f"http://127.0.0.1:{first.port}", f"http://127.0.0.1:{second.port}"
        auth = {"Authorization": f"Bearer {stack.secret_key}"}
        body = {
            "provider": "test-oauth2",
            "provider_config_key": "oauth",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
        }
        async with http.post(f"{one}/config", json=body, headers=auth) as resp:
            assert resp.status == 200

        async with http.ws_connect(f"{one}/") as socket:
            ack = json.loads((await socket.receive(timeout=10)).data)
            ws_client_id = ack["ws_client_id"]
            url = f"{two}/oauth/connect/oauth?connection_id=replica-1&public_key={stack.public_key}&ws_client_id={ws_client_id}"
            async with http.get(url, allow_redirects=False) as resp:
                assert resp.status == 302
                location = resp.headers["Location"]
            async with http.get(location, allow_redirects=False) as resp:
                callback = resp.headers["Location"]
            assert urlsplit(callback).port == second.port  # the callback lands on the second replica
            async with http.get(callback) as resp:
                assert resp.status == 200
            frame = json.loads((await socket.receive(timeout=15)).data)
        assert frame == {
            "message_type": "success",
            "provider_config_key": "oauth",
            "connection_id": "replica-1",
            "is_pending": False,
        }
        db = mongo_client[stack.database]
        assert await db["connections"].count_documents({"connection_id": "replica-1"}) == 1
    finally:
        await provider.stop()

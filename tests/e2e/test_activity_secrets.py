"""After API-key, Basic and OAuth 2 connects and their webhooks through the whole stack (four services
as processes), the activity log tells each story, answers ``/logs`` on the gateway, and holds not
one of the secrets the run used: every secret string is searched for in the JSON of both collections.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from keyway_shared.cipher import CredentialCipher
from keyway_shared.store import EnvironmentStore, WebhookKeyStore

from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from ..support.receiver import WebhookReceiver
from ..support.stack import Stack
from .conftest import wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]

API_KEY = "phx_live_e2e_api_key_8f3a61c2"
PASSWORD = "correct-horse-battery-staple-91"


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_the_activity_log_tells_every_connect_and_keeps_no_secret(
    cleanup_stack: Stack, http: aiohttp.ClientSession, mongo_client: Any, tmp_path: Path
) -> None:
    stack = cleanup_stack
    provider = await OAuthProvider().start()
    receiver = await WebhookReceiver().start()
    try:
        providers_file = tmp_path / "providers.yaml"
        providers_file.write_text(
            yaml.safe_dump(
                {
                    "e2e-oauth2": provider.template(),
                    "e2e-key": {"auth_mode": "API_KEY", "proxy": {"base_url": provider.base}},
                    "e2e-basic": {"auth_mode": "BASIC", "proxy": {"base_url": provider.base}},
                }
            )
        )
        stack.extra_env["KEYWAY_PROVIDERS_FILE"] = str(providers_file)
        services = stack.start_all()
        for proc in services.values():
            assert proc.port is not None
            await wait_ready(http, proc.port)
        gateway = f"http://127.0.0.1:{services['auth_gateway'].port}"
        auth = {"Authorization": f"Bearer {stack.secret_key}"}
        public = f"public_key={stack.public_key}"

        await call(
            http,
            "PATCH",
            f"{gateway}/environment",
            json={"webhook_settings": {"primary_url": receiver.url}},
            headers=auth,
        )
        for key, body in (
            ("oauth", {"oauth_client_id": provider.client_id, "oauth_client_secret": provider.client_secret}),
            ("key", {}),
            ("basic", {}),
        ):
            await call(
                http,
                "POST",
                f"{gateway}/config",
                json={"provider": f"e2e-{key}" if key != "oauth" else "e2e-oauth2", "provider_config_key": key, **body},
                headers=auth,
            )

        await call(
            http, "POST", f"{gateway}/api-auth/api-key/key?connection_id=u-key&{public}", json={"apiKey": API_KEY}
        )
        await call(
            http,
            "POST",
            f"{gateway}/api-auth/basic/basic?connection_id=u-basic&{public}",
            json={"username": "bob", "password": PASSWORD},
        )
        # a failed attempt that carried a secret: the wrong auth mode for the integration
        async with http.post(
            f"{gateway}/api-auth/api-key/basic?connection_id=u-bad&{public}", json={"apiKey": API_KEY}
        ) as resp:
            assert resp.status == 400
        # the OAuth 2 popup, as a browser without the SDK's WebSocket follows it
        async with http.get(
            f"{gateway}/oauth/connect/oauth?connection_id=u-oauth&{public}", allow_redirects=False
        ) as resp:
            assert resp.status == 302
            authorize = resp.headers["Location"]
        async with http.get(authorize, allow_redirects=False) as resp:
            callback = urlsplit(resp.headers["Location"])
        async with http.get(f"{gateway}{callback.path}?{callback.query}") as resp:
            assert resp.status == 200
            assert "Authorization succeeded" in await resp.text()

        async def story(connection: str, state: str, messages: int) -> dict[str, Any] | None:
            async with http.get(
                f"{gateway}/logs/operations?type=auth:create_connection&connection={connection}&state={state}",
                headers=auth,
            ) as resp:
                listed = (await resp.json())["data"]
            if not listed:
                return None
            async with http.get(f"{gateway}/logs/operations/{listed[0]['id']}", headers=auth) as resp:
                one: dict[str, Any] = (await resp.json())["data"]
            return one if len(one["messages"]) >= messages else None

        oauth = await eventually(lambda: story("u-oauth", "success", 4), timeout=60, what="the OAuth story")
        assert [m["message"].split(" ")[0] for m in oauth["messages"]] == [
            "Authorization",
            "Received",
            "Token",
            "Connection",
        ]
        await eventually(lambda: story("u-key", "success", 1), timeout=60, what="the API-key connect")
        await eventually(lambda: story("u-basic", "success", 1), timeout=60, what="the Basic connect")
        failed = await eventually(lambda: story("u-bad", "failed", 1), timeout=60, what="the failed attempt")
        assert failed["error"]["type"] == "invalid_auth_mode"

        async def deliveries() -> list[Any] | None:
            async with http.get(f"{gateway}/logs/operations?type=webhook:outgoing&state=success", headers=auth) as resp:
                found = (await resp.json())["data"]
            return found if len(found) >= 4 and len(receiver.received) >= 4 else None

        await eventually(deliveries, timeout=60, what="the four auth webhooks delivered and logged")
        async with http.get(f"{gateway}/logs/operations?search=created&integration=oauth", headers=auth) as resp:
            assert [op["connection_id"] for op in (await resp.json())["data"]] == ["u-oauth"]

        # Every secret the run used, in every form it travelled in.
        db = mongo_client[stack.database]
        cipher = CredentialCipher(current_key=stack.encryption_key)
        token_request = provider.token_requests[-1]
        dev = await EnvironmentStore(db, cipher).get("dev")
        assert dev is not None
        secrets = [
            API_KEY,
            PASSWORD,
            base64.b64encode(f"bob:{PASSWORD}".encode()).decode(),
            provider.client_secret,
            base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode()).decode(),
            token_request["code"],
            token_request["code_verifier"],
            *provider.access_tokens,
            *(token for grant in provider.grants.values() for token in grant.refresh_tokens),
            stack.secret_key,
            stack.encryption_key,
            *await WebhookKeyStore(db, cipher).signing_keys("dev"),
            dev.webhook_signing_key,
        ]
        for hook in receiver.received:
            for name in ("X-Nango-Signature", "X-Nango-Hmac-Sha256", "webhook-signature"):
                secrets.extend(part for part in hook.headers.get(name, "").replace(",", " ").split() if len(part) > 8)
        stored = {
            name: json.dumps(await db[name].find({}).to_list(), default=str)
            for name in ("activity_operations", "activity_messages")
        }
        assert len(stored["activity_messages"]) > 1000  # the stories are all there
        for secret in secrets:
            assert len(secret) >= 8
            for name, text in stored.items():
                assert secret not in text, f"a secret ({secret[:4]}…) is in {name}"
    finally:
        await receiver.stop()
        await provider.stop()

"""The first end-to-end slice: an API-key connection made through the gateway comes out as a
signed webhook at a real receiver and as an entry in the activity log, with all four services
running as real processes on the real RabbitMQ and MongoDB-wire server."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from keyway_shared.cipher import CredentialCipher
from keyway_shared.store import WebhookKeyStore

from ..support.polling import eventually
from ..support.receiver import WebhookReceiver
from ..support.stack import Stack
from .conftest import wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]


async def test_api_key_connection_becomes_signed_webhook_and_activity_entry(
    cleanup_stack: Stack, http: aiohttp.ClientSession, mongo_client: Any
) -> None:
    stack = cleanup_stack
    services = stack.start_all()
    for proc in services.values():
        assert proc.port is not None
        await wait_ready(http, proc.port)
    gateway = f"http://127.0.0.1:{services['auth_gateway'].port}"
    auth = {"Authorization": f"Bearer {stack.secret_key}"}
    receiver = await WebhookReceiver().start()
    try:
        async with http.patch(
            f"{gateway}/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
            environment = (await resp.json())["environment"]
            assert environment["webhook_settings"]["primary_url"] == receiver.url
            webhook_signing_key = environment["webhook_signing_key"]  # what X-Nango-Hmac-Sha256 is keyed by

        async with http.post(
            f"{gateway}/config", json={"provider": "posthog", "provider_config_key": "posthog-prod"}, headers=auth
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"config": {"unique_key": "posthog-prod", "provider": "posthog"}}

        api_key = "phx_e2e_secret_value_123"
        url = (
            f"{gateway}/api-auth/api-key/posthog-prod?connection_id=user-42&public_key={stack.public_key}"
            "&params[subdomain]=eu"
        )
        async with http.post(url, json={"apiKey": api_key}, headers={"Origin": "https://app.example"}) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"providerConfigKey": "posthog-prod", "connectionId": "user-42"}
            assert resp.headers["Access-Control-Allow-Origin"] == "*"

        await eventually(lambda: _first(receiver), timeout=30, what="the auth webhook")
        hook = receiver.received[0]
        expected_body = (
            '{"from":"nango","type":"auth","connectionId":"user-42","providerConfigKey":"posthog-prod",'
            '"authMode":"API_KEY","provider":"posthog","environment":"dev","operation":"creation","success":true}'
        )
        assert hook.body.decode() == expected_body
        assert (
            hook.headers["X-Nango-Signature"] == hashlib.sha256((stack.secret_key + expected_body).encode()).hexdigest()
        )
        assert (
            hook.headers["X-Nango-Hmac-Sha256"]
            == hmac.new(webhook_signing_key.encode(), hook.body, hashlib.sha256).hexdigest()
        )
        assert hook.headers["webhook-id"]
        assert hook.headers["webhook-timestamp"]
        assert api_key not in json.dumps(hook.headers) + hook.body.decode()

        db = mongo_client[stack.database]
        cipher = CredentialCipher(current_key=stack.encryption_key)
        signing_keys = await WebhookKeyStore(db, cipher).signing_keys("dev")  # the dispatcher created it
        assert len(signing_keys) == 1
        verify_standard(signing_keys[0], hook.headers, hook.body)  # the standardwebhooks library agrees

        operation = await eventually(
            # The webhook's delivery is an operation of this connection too: ask for the connect.
            lambda: db["activity_operations"].find_one(
                {"connection_id": "user-42", "state": "success", "type": "auth:create_connection"}
            ),
            timeout=30,
            what="the activity-log entry",
        )
        assert operation["type"] == "auth:create_connection"
        assert operation["provider_config_key"] == "posthog-prod"

        async with http.get(f"{gateway}/connection/user-42?provider_config_key=posthog-prod", headers=auth) as resp:
            assert resp.status == 200
            connection = await resp.json()
        assert connection["credentials"] == {"type": "API_KEY", "apiKey": api_key}
        assert connection["connection_config"] == {"subdomain": "eu"}
        assert connection["provider_config_key"] == "posthog-prod"
        assert connection["last_fetched_at"].endswith("Z")

        raw = await db["connections"].find_one({"connection_id": "user-42"})
        assert api_key not in json.dumps(raw, default=str)  # encrypted at rest
        logs = stack.logs()
        assert api_key not in logs
        assert stack.secret_key not in logs
    finally:
        await receiver.stop()


async def _first(receiver: WebhookReceiver) -> bool:
    return bool(receiver.received)


def verify_standard(signing_key: str, hook_headers: dict[str, str], body: bytes) -> None:
    """Raises when the Standard Webhooks signature does not verify."""
    Webhook(signing_key).verify(body, {k.lower(): v for k, v in hook_headers.items()})

"""Webhooks the real dispatcher sent, verified by Nango's own node SDK (``verifyWebhookSignature``).

The SDK re-serialises the parsed body with ``JSON.stringify`` and hashes the secret key with it, so
this passes only if our bytes are byte-for-byte what JavaScript would produce: key order, no spaces,
unescaped non-ASCII, escaped control characters. Both pinned SDK releases (0.40.8, 0.42.11) check
the same webhooks, including ones with awkward text, and refuse a tampered one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import AuthFailed, ConnectionCreated, ErrorInfo, TokenRefreshFailed
from keyway_shared.store import EnvironmentStore
from webhook_dispatcher.app import create_app

from ..support.inproc import event
from ..support.polling import eventually
from ..support.scripted_receiver import scripted_receiver
from ..support.webhooks import configure, count_at_least, dispatcher_settings, running_dispatcher

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
SCRIPT = SDK_DIR / "verify_webhooks.mjs"
VERSIONS = ("nango-node-0408", "nango-node-04211")
NODE = shutil.which("node")

if NODE is None or not all((SDK_DIR / "node_modules" / alias).exists() for alias in VERSIONS):
    pytest.skip("needs node and `npm ci` in tests/sdk (make test-deps)", allow_module_level=True)


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


async def node_verify(sdk: str, items: list[dict[str, str]]) -> list[bool]:
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(SCRIPT),
        sdk,
        cwd=SDK_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(items).encode()), timeout=60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)  # type: ignore[no-any-return]


async def test_nangos_node_sdk_accepts_our_webhooks(
    db: Any,
    mongo_url: str,
    db_name: str,
    amqp_url: str,
    namespace: str,
    encryption_key: str,
    publisher: EventPublisher,
) -> None:
    settings = dispatcher_settings(
        mongo_url=mongo_url, db_name=db_name, amqp_url=amqp_url, namespace=namespace, encryption_key=encryption_key
    )
    environments = EnvironmentStore(db, CredentialCipher(current_key=encryption_key))
    conn = {"provider_config_key": "gh-ünï", "provider": "github", "auth_mode": "OAUTH2"}
    events = [
        event("connection.created", ConnectionCreated(connection_id="plain-1", **conn)),
        event("connection.created", ConnectionCreated(connection_id='quote"slash\\ü✓😀', **conn)),
        event(
            "auth.failed",
            AuthFailed(
                connection_id="c-2",
                operation="creation",
                error=ErrorInfo(type="invalid_callback", description="line one\nline two\ttab \u2028 </script>"),
            ),
        ),
        event(
            "token.refresh_failed",
            TokenRefreshFailed(
                connection_id="c-3",
                **conn,
                error=ErrorInfo(type="refresh_token_external_error", description="invalid_grant: «revoked»"),
            ),
        ),
    ]
    async with scripted_receiver() as rec:
        secret_key = await configure(environments, primary_url=rec.url)
        async with running_dispatcher(create_app(settings)):
            for item in events:
                await publisher.publish(item)
            await eventually(lambda: count_at_least(rec.arrivals, len(events)), what="every webhook")

    items = [
        {"secretKey": secret_key, "signature": a.headers["x-nango-signature"], "body": a.request.body.decode()}
        for a in rec.arrivals
    ]
    # Deliveries arrive in any order: tamper with the one whose body names plain-1.
    original = next(item for item in items if '"plain-1"' in item["body"])
    tampered = dict(original, body=original["body"].replace("plain-1", "plain-2"))
    assert tampered["body"] != original["body"]
    for sdk in VERSIONS:
        assert await node_verify(sdk, [*items, tampered]) == [True] * len(items) + [False]

"""The unmodified Nango node SDK (@nangohq/node 0.40.8 and 0.42.11, from npm) against Keyway.

``tests/sdk/node_sdk_check.mjs`` calls every backend method the issue names through the real SDK
and prints each answer; this test prepares the world (a gateway and a webhook dispatcher in this
process on the real broker and database, an OAuth 2 server, a third-party API stand-in and a webhook
receiver on 127.0.0.1), runs the script with Node, and checks every answer against spec §3.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyway_shared.jsjson import js_stringify
from keyway_shared.webhook_signing import nango_signature
from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..integration.gateway_app import Gateway, running_gateway
from ..integration.test_oauth2_flow import run_flow
from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from ..support.receiver import Received, WebhookReceiver
from ..support.upstream import EchoUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
SCRIPT = SDK_DIR / "node_sdk_check.mjs"
VERSIONS = {"0.40.8": "nango-node-0408", "0.42.11": "nango-node-04211"}
NODE = shutil.which("node")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUIDISH = re.compile(r"^[0-9a-f-]{36}$")

if NODE is None or not all((SDK_DIR / "node_modules" / alias).exists() for alias in VERSIONS.values()):
    pytest.skip("needs node and `npm ci` in tests/sdk (make test-deps)", allow_module_level=True)


@dataclass
class World:
    gw: Gateway
    provider: OAuthProvider
    upstream: EchoUpstream
    receiver: WebhookReceiver
    config: dict[str, Any]
    webhooks: list[Received]


@pytest.fixture
async def world(
    tmp_path: Path,
    mongo_url: str,
    db_name: str,
    db: Any,
    amqp_url: str,
    namespace: str,
    amqp: Any,
    encryption_key: str,
) -> AsyncIterator[World]:
    provider = await OAuthProvider().start()
    upstream = await EchoUpstream().start()
    receiver = await WebhookReceiver().start()
    providers_file = tmp_path / "providers.yaml"
    providers_file.write_text(
        yaml.safe_dump({"test-oauth2": provider.template(proxy={"base_url": f"{upstream.base}/v1"})})
    )
    dispatcher = DispatcherSettings(
        mongodb_url=mongo_url,
        mongodb_database=db_name,
        amqp_url=amqp_url,
        bus_namespace=namespace,
        encryption_key=encryption_key,
        egress_allowlist="127.0.0.0/8",
        queue_type="classic",
    )
    try:
        async with (
            running_gateway(
                mongo_url=mongo_url,
                db_name=db_name,
                amqp_url=amqp_url,
                namespace=namespace,
                encryption_key=encryption_key,
                providers_file=str(providers_file),
                egress_allowlist="127.0.0.0/8",
                provider_timeout_seconds=2.0,
            ) as gw,
            running(create_dispatcher(dispatcher)),
        ):
            await prepare(gw, provider, receiver)
            webhooks = await eventually(lambda: _hooks(receiver, 5), timeout=30, what="five auth webhooks")
            yield World(gw, provider, upstream, receiver, _config(upstream, webhooks), webhooks)
    finally:
        await receiver.stop()
        await upstream.stop()
        await provider.stop()


async def _hooks(receiver: WebhookReceiver, count: int) -> list[Received] | None:
    return list(receiver.received) if len(receiver.received) >= count else None


async def prepare(gw: Gateway, provider: OAuthProvider, receiver: WebhookReceiver) -> None:
    """Integrations of four auth modes, an OAuth 2 connection made through the popup flow, three imports."""
    resp = await gw.client.patch(
        "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    for body in (
        {
            "provider": "test-oauth2",
            "provider_config_key": "oauth",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
            "oauth_scopes": "read",
        },
        {"provider": "posthog", "provider_config_key": "ph"},
        {"provider": "freshdesk", "provider_config_key": "fd"},
        {"provider": "trello", "provider_config_key": "tr", "oauth_client_id": "k", "oauth_client_secret": "s"},
    ):
        resp = await gw.client.post("/config", json=body, headers=gw.auth)
        assert resp.status == 200, await resp.text()
    _resp, html, frame = await run_flow(gw, provider, "oauth", "connection_id=node-oauth")
    assert frame["message_type"] == "success", html
    for body in (
        {"connection_id": "node-ph", "provider_config_key": "ph", "api_key": "phx_node_key"},
        {"connection_id": "node-fd", "provider_config_key": "fd", "username": "ann", "password": "pw"},
        {"connection_id": "node-fd-2", "provider_config_key": "fd", "username": "bob", "password": "pw2"},
        {"connection_id": "node-tr", "provider_config_key": "tr", "oauth_token": "ot", "oauth_token_secret": "ots"},
    ):
        resp = await gw.client.post("/connection", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()


def _config(upstream: EchoUpstream, webhooks: list[Received]) -> dict[str, Any]:
    return {
        "oauth": {"key": "oauth", "connectionId": "node-oauth"},
        "apiKey": {"key": "ph", "connectionId": "node-ph"},
        "basic": {"key": "fd", "connectionId": "node-fd", "otherConnectionId": "node-fd-2"},
        "oauth1": {"key": "tr", "connectionId": "node-tr"},
        "integration": {"provider": "github", "key": "gh-node"},
        "webhooks": [{"body": h.body.decode(), "signature": h.headers["X-Nango-Signature"]} for h in webhooks],
        "proxy": {"base": upstream.base},
    }


async def run_script(world: World, sdk: str, *sections: str) -> dict[str, dict[str, Any]]:
    """Run the Node script (without blocking the loop the gateway runs on); answers by call name."""
    env = {
        **os.environ,
        "KEYWAY_SECRET_KEY": world.gw.secret_key,
        "KEYWAY_CHECK_CONFIG": json.dumps({**world.config, "sections": list(sections)}),
    }
    proc = await asyncio.create_subprocess_exec(
        str(NODE),
        str(SCRIPT),
        VERSIONS[sdk],
        world.gw.url,
        cwd=SDK_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    answers: dict[str, dict[str, Any]] = {}
    for line in stdout.decode().splitlines():
        answer = json.loads(line)
        answers[answer["name"]] = answer
    return answers


@pytest.mark.parametrize("sdk", list(VERSIONS))
async def test_dump(world: World, sdk: str) -> None:
    answers = await run_script(world, sdk, "integrations", "connections", "metadata", "webhooks", "auth", "delete")
    for a in answers.values():
        print(json.dumps(a))
    assert False

"""Two replicas of everything, started by ``deploy/local/up.py --replicas 2`` (what ``make up
REPLICAS=2`` runs), on ports of their own, with a database and a bus namespace of their own.

The main flows run against the pair: an OAuth2 connection whose callback lands on the other gateway
replica than the one holding the browser's socket, a forced refresh, an API-key connection whose
webhook fails once and is retried, background refreshes, and a load of API-key connections.
Halfway through the load one replica of each service is killed with SIGKILL. Then:

- every connection the gateways stored has its event, its webhook and its activity entries;
- every webhook arrives once per attempt: a webhook-id seen twice is allowed only when its first
  POST was in flight on the dispatcher that was killed (at-least-once delivery; receivers dedupe by
  webhook-id), and the retried one arrives exactly twice, failed then delivered;
- every refresh happens once: the provider, which revokes a grant when a rotated refresh token is
  used again, sees exactly one refresh per connection, before the kill and after it.

The receiver takes 0.2 s per webhook, so deliveries are in flight when the dispatcher dies; the
ones it had claimed are taken over by the surviving dispatcher once their lease runs out. The
refreshes after the kill fall due a few seconds after it, so none is in flight on the refresher that
dies: a refresh cut between the provider's answer and the write is a question for the provider (did
it rotate the token?) that no number of replicas settles.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
import yaml
from aiohttp import web

from ..support.catalog import providers_file as with_test_providers
from ..support.oauth_provider import Grant, OAuthProvider
from ..support.polling import eventually
from ..support.procs import ROOT, UP_PORT_VARS, UP_READY_LINE, free_port_run
from ..support.receiver import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.timeout(600)]


@dataclass
class UpStack:
    """``deploy/local/up.py --replicas 2`` in a subprocess, its output in a log file."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    replicas: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # package -> [(port, pid)]

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "local" / "up.py"), "--replicas", "2"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_ready(self, timeout: float = 120) -> None:
        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"up.py exited with {self.proc.returncode}:\n{self.logs()[-5000:]}")
            return "all services ready" in self.logs() and "Ctrl-C stops everything" in self.logs()

        await eventually(ready, timeout=timeout, interval=0.2, what="up.py: all services ready")
        text = self.logs().split("all services ready", 1)[1]
        for package, port, pid in UP_READY_LINE.findall(text):
            self.replicas.setdefault(package, []).append((int(port), int(pid)))
        assert {p: len(r) for p, r in self.replicas.items()} == dict.fromkeys(UP_PORT_VARS, 2), self.replicas

    def kill(self, package: str, replica: int) -> None:
        os.kill(self.replicas[package][replica][1], signal.SIGKILL)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for replicas in self.replicas.values():  # whatever up.py could not stop
            for _port, pid in replicas:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return self.proc.returncode


@dataclass(frozen=True)
class Receipt:
    at: float  # time.monotonic()
    webhook_id: str
    connection_id: str
    operation: str
    status: int


class CountingReceiver(WebhookReceiver):
    """Keeps every POST with its webhook-id; answers 500 to the first POST for the connections in
    ``fail_once``, 200 to everything else, each after ``delay`` seconds (so that deliveries are in
    flight when a dispatcher dies)."""

    def __init__(self, *, fail_once: set[str], delay: float = 0.0) -> None:
        super().__init__()
        self.fail_once = set(fail_once)
        self.delay = delay
        self.receipts: list[Receipt] = []

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body = json.loads(await request.read())
        connection_id = str(body.get("connectionId"))
        status = 200
        if connection_id in self.fail_once:
            self.fail_once.discard(connection_id)
            status = 500
        receipt = Receipt(
            arrived, request.headers.get("webhook-id", ""), connection_id, str(body.get("operation")), status
        )
        self.receipts.append(receipt)
        await asyncio.sleep(self.delay)
        return web.Response(status=status, text=f"answered {status}")

    def delivered(self, connection_id: str, operation: str = "creation") -> list[Receipt]:
        return [r for r in self.receipts if r.connection_id == connection_id and r.operation == operation]


def mint(provider: OAuthProvider) -> tuple[str, str, str]:
    """A grant issued without a browser: (grant id, access token, refresh token)."""
    grant_id = secrets.token_hex(8)
    provider.grants[grant_id] = Grant(client_id=provider.client_id, scope="")
    body = provider._issue(grant_id)
    return grant_id, str(body["access_token"]), str(body["refresh_token"])


def refreshes_per_grant(provider: OAuthProvider) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in provider.token_requests:
        if request.get("grant_type") == "refresh_token":
            grant = provider.refresh_index.get(request.get("refresh_token", ""), "?")
            counts[grant] = counts.get(grant, 0) + 1
    return counts


async def test_two_replicas_of_everything_lose_nothing_when_one_of_each_is_killed(
    mongo_url: str, amqp_url: str, db: Any, db_name: str, namespace: str, amqp: Any, tmp_path: Path
) -> None:
    provider = await OAuthProvider().start()
    receiver = CountingReceiver(fail_once={"retry-1"}, delay=0.2)
    await receiver.start()
    providers_file = tmp_path / "providers.yaml"
    providers_file.write_text(
        yaml.safe_dump(
            {
                "test-oauth2": provider.template(),
                "test-apikey": {"auth_mode": "API_KEY", "proxy": {"base_url": provider.base}},
            }
        )
    )
    secret_key, public_key = str(uuid.uuid4()), str(uuid.uuid4())
    first_ports = {package: free_port_run(2) for package in UP_PORT_VARS}
    env = {
        **os.environ,
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": db_name,
        "AMQP_URL": amqp_url,
        "KEYWAY_BUS_NAMESPACE": namespace,
        "KEYWAY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KEYWAY_SECRET_KEY_DEV": secret_key,
        "KEYWAY_PUBLIC_KEY_DEV": public_key,
        "KEYWAY_PUBLIC_KEY_CONNECT": "allowed",  # connects below use the public key (2024 protocol)
        "KEYWAY_PROVIDERS_FILE": with_test_providers(str(providers_file)),
        "KEYWAY_EGRESS_ALLOWLIST": "127.0.0.0/8",
        "KEYWAY_LOG_JSON": "true",
        "KEYWAY_OUTBOX_SWEEP_SECONDS": "0.5",
        "KEYWAY_OUTBOX_STALE_SECONDS": "1",
        "KEYWAY_WEBHOOK_RETRY_SCALE": "0.2",  # the first retry after about a second instead of 5 s
        "KEYWAY_PROVIDER_TIMEOUT_SECONDS": "5",
        **{UP_PORT_VARS[package]: str(port) for package, port in first_ports.items()},
    }
    env.pop("KEYWAY_PUBLIC_URL", None)  # up.py derives it from the first gateway's port
    env.pop("REPLICAS", None)
    # Both gateway replicas listen on the one gateway port (KEYWAY_REUSE_PORT): the kernel, not the
    # test, picks the replica of each new connection.
    gw0 = gw1 = f"http://127.0.0.1:{first_ports['auth_gateway']}"
    auth = {"Authorization": f"Bearer {secret_key}"}

    # Every event published on this stack's exchange, to check the activity log stored each one.
    events: list[dict[str, Any]] = []
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True)
    watch = await channel.declare_queue(f"{namespace}.test.watch")  # removed with the namespace
    await watch.bind(exchange, routing_key="#")

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        events.append(json.loads(message.body))

    await watch.consume(collect, no_ack=True)

    stack = UpStack(env, tmp_path / "up.log")
    stack.start()
    try:
        await stack.wait_ready()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # flow cookies too
            # ---- before the kill ------------------------------------------------------------
            async with http.patch(
                f"{gw0}/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=auth
            ) as resp:
                assert resp.status == 200, await resp.text()
            for body in (
                {"provider": "test-apikey", "provider_config_key": "key"},
                {
                    "provider": "test-oauth2",
                    "provider_config_key": "oauth",
                    "oauth_client_id": provider.client_id,
                    "oauth_client_secret": provider.client_secret,
                },
            ):
                async with http.post(f"{gw1}/config", json=body, headers=auth) as resp:
                    assert resp.status == 200, await resp.text()

            # OAuth2: the socket and the connect request on the second replica, the provider's
            # redirect to the public URL, which is the first one.
            async with http.ws_connect(f"{gw1}/") as ws:
                ack = json.loads((await ws.receive(timeout=10)).data)
                url = (
                    f"{gw1}/oauth/connect/oauth?connection_id=oauth-1&public_key={public_key}"
                    f"&ws_client_id={ack['ws_client_id']}"
                )
                async with http.get(url, allow_redirects=False) as resp:
                    assert resp.status == 302, await resp.text()
                    authorize = resp.headers["Location"]
                async with http.get(authorize, allow_redirects=False) as resp:
                    callback = resp.headers["Location"]
                assert urlsplit(callback).port == first_ports["auth_gateway"]  # not the socket's replica
                async with http.get(callback) as resp:
                    assert resp.status == 200
                frame = json.loads((await ws.receive(timeout=15)).data)
            assert frame["message_type"] == "success", frame
            assert frame["connection_id"] == "oauth-1"

            # A forced refresh, once, through either replica.
            before = refreshes_per_grant(provider)
            async with http.get(
                f"{gw0}/connection/oauth-1?provider_config_key=oauth&force_refresh=true", headers=auth
            ) as resp:
                assert resp.status == 200, await resp.text()
            (oauth_grant,) = provider.grants  # the one the browser flow created
            assert refreshes_per_grant(provider).get(oauth_grant, 0) == before.get(oauth_grant, 0) + 1 == 1

            # A webhook whose first attempt fails: retried through the broker, same webhook-id.
            async with http.post(
                f"{gw0}/api-auth/api-key/key?connection_id=retry-1&public_key={public_key}", json={"apiKey": "k"}
            ) as resp:
                assert resp.status == 200, await resp.text()

            # Background refreshes: connections imported with tokens living 2 s are due at once.
            early: dict[str, str] = {}
            for i in range(10):
                grant, access, refresh = mint(provider)
                early[f"early-{i}"] = grant
                await _import(http, (gw0, gw1)[i % 2], auth, f"early-{i}", access, refresh, expires_in=2)

            async def early_refreshed() -> bool:
                counts = refreshes_per_grant(provider)
                return all(counts.get(grant, 0) >= 1 for grant in early.values())

            await eventually(early_refreshed, timeout=60, what="the first background refreshes")
            await eventually(lambda: _at_least(receiver.delivered("retry-1"), 2), timeout=60, what="the retry")

            # ---- the load, and the kill halfway ---------------------------------------------
            accepted: set[str] = set()
            limit = asyncio.Semaphore(8)

            async def connect(base: str, connection_id: str) -> None:
                url = f"{base}/api-auth/api-key/key?connection_id={connection_id}&public_key={public_key}"
                async with limit:
                    try:
                        async with http.post(url, json={"apiKey": f"key-{connection_id}"}) as resp:
                            if resp.status == 200:
                                accepted.add(connection_id)
                    except aiohttp.ClientError:
                        pass  # the replica died under this request: not accepted (it may still be stored)

            first_half = [asyncio.create_task(connect((gw0, gw1)[i % 2], f"load-{i}")) for i in range(80)]
            await eventually(lambda: _at_least(accepted, 25), timeout=60, what="the first accepted connections")
            killed_at = time.monotonic()
            for package, replica in (
                ("auth_gateway", 1),
                ("webhook_dispatcher", 0),
                ("activity_log", 0),
                ("token_refresher", 0),
            ):
                stack.kill(package, replica)
            await asyncio.gather(*first_half)
            await asyncio.gather(*(connect(gw0, f"load-{i}") for i in range(80, 120)))

            # Refreshes that fall due after the kill: the surviving refresher takes them, once each.
            late: dict[str, str] = {}
            for i in range(10):
                grant, access, refresh = mint(provider)
                late[f"late-{i}"] = grant
                await _import(http, gw0, auth, f"late-{i}", access, refresh, expires_in=12)

        # ---- after: everything arrives, once ----------------------------------------------------
        stored = {doc["connection_id"] async for doc in db["connections"].find({}, {"connection_id": 1})}
        assert accepted <= stored, "an answered 200 is a stored connection"
        assert len(accepted) >= 60

        async def settled() -> bool:
            counts = refreshes_per_grant(provider)
            return (
                await db["outbox"].count_documents({}) == 0
                and all(any(r.status == 200 for r in receiver.delivered(c)) for c in stored)
                and all(counts.get(grant, 0) >= 1 for grant in late.values())
            )

        await eventually(settled, timeout=240, interval=0.5, what="every webhook delivered and refresh done")

        counts = refreshes_per_grant(provider)
        assert {c: counts.get(g, 0) for c, g in {**early, **late}.items()} == dict.fromkeys({**early, **late}, 1)
        assert counts.get(oauth_grant) == 1
        assert provider.reuse_detected == 0, "a refresh token was spent twice"

        by_id: dict[str, list[Receipt]] = {}
        for receipt in receiver.receipts:
            by_id.setdefault(receipt.webhook_id, []).append(receipt)
        assert all(webhook_id for webhook_id in by_id)
        retried = receiver.delivered("retry-1")
        assert [r.status for r in retried] == [500, 200]
        assert len({r.webhook_id for r in retried}) == 1
        duplicated = {
            webhook_id: receipts
            for webhook_id, receipts in by_id.items()
            if receipts[0].connection_id != "retry-1" and len(receipts) > 1
        }
        for webhook_id, receipts in duplicated.items():
            # a second POST only for a first one that was in flight on the killed dispatcher
            assert len(receipts) == 2, (webhook_id, receipts)
            assert receipts[0].at <= killed_at + 1.0, (webhook_id, receipts)
        creations = {r.connection_id for r in receiver.receipts if r.operation == "creation" and r.status == 200}
        assert stored <= creations

        async def all_recorded() -> bool:
            ids = {event["id"] for event in events}
            recorded = {
                doc["_id"] async for doc in db["activity_messages"].find({"_id": {"$in": list(ids)}}, {"_id": 1})
            }
            return ids == recorded

        await eventually(all_recorded, timeout=60, interval=0.5, what="every event in the activity log")
        created = [e["data"]["connection_id"] for e in events if e["type"] == "connection.created"]
        assert set(created) == stored  # one event per stored connection ...
        assert len({e["id"] for e in events if e["type"] == "connection.created"}) == len(stored)  # ... exactly one
    finally:
        returncode = stack.stop()
        await receiver.stop()
        await provider.stop()
    assert returncode == 0, stack.logs()[-5000:]
    assert "stopped" in stack.logs()


async def _import(
    http: aiohttp.ClientSession,
    base: str,
    auth: dict[str, str],
    connection_id: str,
    access: str,
    refresh: str,
    *,
    expires_in: int,
) -> None:
    body = {
        "connection_id": connection_id,
        "provider_config_key": "oauth",
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": expires_in,
    }
    async with http.post(f"{base}/connection", json=body, headers=auth) as resp:
        assert resp.status == 201, await resp.text()


async def _at_least(items: Any, count: int) -> bool:
    return len(items) >= count

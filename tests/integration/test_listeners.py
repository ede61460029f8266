"""Split public and admin listeners: one application on two ports, each route answering on its side."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from auth_gateway.app import create_app
from auth_gateway.dashboard.passwords import hash_password
from auth_gateway.http.listeners import route_sides
from auth_gateway.routes import ROUTES
from auth_gateway.settings import GatewaySettings

from ..support.procs import free_port
from .gateway_app import Gateway, StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@dataclass
class Split:
    public: str
    admin: str
    auth: dict[str, str]
    http: aiohttp.ClientSession


@pytest.fixture
async def split(service_settings: dict[str, Any], amqp: Any, encryption_key: str) -> AsyncIterator[Split]:
    public_port, admin_port, secret_key = free_port(), free_port(), str(uuid.uuid4())
    settings = GatewaySettings(
        **service_settings,
        encryption_key=encryption_key,
        KEYWAY_SECRET_KEY_DEV=secret_key,
        port=public_port,
        admin_port=admin_port,
        public_url=f"http://127.0.0.1:{public_port}",
        admin_user="admin",
        admin_password_hash=hash_password("a long dashboard password"),
    )
    runner = web.AppRunner(create_app(settings), access_log=None, shutdown_timeout=1)
    await runner.setup()
    for port in (public_port, admin_port):  # what __main__ does through serve(extra_ports=...)
        await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        yield Split(
            public=f"http://127.0.0.1:{public_port}",
            admin=f"http://127.0.0.1:{admin_port}",
            auth={"Authorization": f"Bearer {secret_key}"},
            http=http,
        )
    await runner.cleanup()


async def status(split: Split, base: str, method: str, path: str) -> tuple[int, Any]:
    async with split.http.request(method, base + path, headers=split.auth, allow_redirects=False) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


PUBLIC_ONLY = [("GET", "/health"), ("GET", "/sdk/keyway-connect.js"), ("GET", "/connect/session")]
ADMIN_ONLY = [
    ("GET", "/connection"),
    ("GET", "/config"),
    ("GET", "/environment"),
    ("GET", "/openapi.json"),
    ("GET", "/proxy/anything"),
    ("POST", "/connect/sessions"),
    ("GET", "/dashboard/signin"),
]


async def test_public_routes_answer_on_the_public_port_only(split: Split) -> None:
    for method, path in PUBLIC_ONLY:
        code, _ = await status(split, split.public, method, path)
        assert code != 404, (method, path)
        code, body = await status(split, split.admin, method, path)
        assert code == 404, (method, path)
        assert body["error"]["code"] == "not_found"
    code, _ = await status(split, split.public, "GET", "/oauth/callback")
    assert code != 404
    code, _ = await status(split, split.admin, "GET", "/oauth/callback")
    assert code == 404


async def test_admin_routes_answer_on_the_admin_port_only(split: Split) -> None:
    for method, path in ADMIN_ONLY:
        code, body = await status(split, split.public, method, path)
        assert code == 404, (method, path)
        assert body["error"]["code"] == "not_found"  # the same envelope as a route that does not exist
        assert body["error"]["message"] == f"No route matches {method} {path}"
        code, _ = await status(split, split.admin, method, path)
        assert code != 404 or path.startswith("/proxy"), (method, path)
    code, _ = await status(split, split.admin, "GET", "/connection")
    assert code == 200


async def test_operations_routes_answer_on_both(split: Split) -> None:
    for base in (split.public, split.admin):
        for path in ("/healthz", "/metrics"):
            async with split.http.get(base + path) as resp:
                assert resp.status == 200, (base, path)


async def test_one_port_by_default(start_gateway: StartGateway) -> None:
    gw: Gateway
    async with start_gateway() as gw:
        assert gw.settings.admin_port is None
        for path in ("/health", "/connection", "/openapi.json", "/sdk/keyway-connect.js"):
            resp = await gw.client.get(path, headers=gw.auth)
            assert resp.status == 200, path


def test_every_route_has_one_side() -> None:
    public, admin = route_sides(ROUTES)
    assert not public & admin
    assert ("GET", "/proxy/{path}") in admin
    assert ("GET", "/oauth/callback") in public
    assert ("DELETE", "/connection/{connectionId}") in admin
    assert ("GET", "/providers") in public  # the Connect UI reads it with its session
    assert ("GET", "/providers/{provider}/templates") in admin
    assert ("POST", "/integrations") in admin
    assert all(not path.startswith("/dashboard") for _, path in public)

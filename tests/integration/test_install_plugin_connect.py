"""INSTALL_PLUGIN through the popup, against a fake Crisp on 127.0.0.1: its marketplace install page and
its plugin API, which takes only the plugin's token as Basic with ``X-Crisp-Tier: plugin``.

As Nango's ``installPluginRequest``/``installPluginCallback``: ``/oauth/connect`` sends the browser to
``<app_link>?payload=<state>``; the install page comes back to the callback with that ``payload`` and
the ``website_id``; the plugin token is checked with the template's verification call and stored as
BASIC credentials, the website id as the connection's configuration.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from ..support.procs import free_port
from .flow_helpers import get_connection, run_popup
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .proxy_setup import call

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

PLUGIN = ("plugin-identifier-7", "plugin-key-93")
WEBSITE = "8c842203-7ed8-4e29-a608-7cf78a7d2fcc"


@dataclass
class FakeCrisp:
    port: int = field(default_factory=free_port)
    callback: str = ""  # the gateway's callback URL, which the plugin's settings name
    installs: list[str] = field(default_factory=list)  # the payloads the install page was given
    api_calls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def template(self) -> dict[str, Any]:
        return {
            "auth_mode": "INSTALL_PLUGIN",
            "auth_type": "BASIC",
            "redirect_uri_metadata": ["website_id"],
            "proxy": {
                "base_url": self.base,
                "headers": {"x-crisp-tier": "plugin"},
                "verification": {"method": "GET", "endpoints": ["/v1/plugin/connect/account"]},
            },
        }

    async def __aenter__(self) -> FakeCrisp:
        app = web.Application()
        app.router.add_get("/marketplace/install", self._install)
        app.router.add_route("*", "/v1/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _install(self, request: web.Request) -> web.Response:
        payload = request.query.get("payload", "")
        self.installs.append(payload)
        query = urlencode({"payload": payload, "website_id": WEBSITE})
        raise web.HTTPFound(f"{self.callback}?{query}")

    async def _api(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{PLUGIN[0]}:{PLUGIN[1]}".encode()).decode()
        if request.headers.get("Authorization") != expected or request.headers.get("X-Crisp-Tier") != "plugin":
            self.refused.append(request.path)
            return web.json_response({"error": True, "reason": "invalid_session"}, status=401)
        self.api_calls.append(request.path)
        return web.json_response({"error": False, "reason": "resolved", "data": {"plugin_id": "p-1"}})


@pytest.fixture
async def crisp() -> AsyncIterator[FakeCrisp]:
    async with FakeCrisp() as fake:
        yield fake


@pytest.fixture
async def gw(start_gateway: StartGateway, crisp: FakeCrisp, tmp_path: Path) -> AsyncIterator[Gateway]:
    providers = providers_yaml(tmp_path, {"crisp-fake": crisp.template()})
    async with start_gateway(providers_file=providers, egress_allowlist="127.0.0.0/8") as gateway:
        crisp.callback = f"{gateway.url}/oauth/callback"
        yield gateway


async def add(gw: Gateway, crisp: FakeCrisp, key: str, password: str = PLUGIN[1], **fields: Any) -> None:
    app_link = fields.pop("app_link", f"{crisp.base}/marketplace/install")
    custom = {"username": PLUGIN[0], "password": password}
    await create_integration(gw, "crisp-fake", key, app_link=app_link, custom=custom, **fields)


async def test_the_install_connects_with_the_plugins_token(gw: Gateway, crisp: FakeCrisp, db: Any) -> None:
    await add(gw, crisp, "crisp")
    result = await run_popup(gw, "crisp", "connection_id=site-1")
    assert result.status == 200, result.html
    assert result.frame["message_type"] == "success", result.frame
    assert result.provider_redirect is not None
    assert result.provider_redirect.startswith(f"{crisp.base}/marketplace/install?payload=")
    assert crisp.installs
    assert crisp.installs[0] in result.provider_redirect
    assert crisp.api_calls == ["/v1/plugin/connect/account"]  # the verification call

    connection = await get_connection(gw, "site-1", "crisp")
    assert connection["credentials"] == {"type": "BASIC", "username": PLUGIN[0], "password": PLUGIN[1]}
    assert connection["connection_config"] == {"website_id": WEBSITE}
    stored = await db["connections"].find_one({"connection_id": "site-1"})
    assert stored["auth_mode"] == "INSTALL_PLUGIN"
    assert PLUGIN[1] not in str(stored)

    resp = await call(gw, "GET", f"/v1/website/{WEBSITE}/conversations/1", "site-1", "crisp")
    assert resp.status == 200, await resp.text()
    assert crisp.api_calls[-1] == f"/v1/website/{WEBSITE}/conversations/1"
    assert crisp.refused == []


async def test_a_token_the_plugin_api_refuses_stores_nothing(gw: Gateway, crisp: FakeCrisp, db: Any) -> None:
    await add(gw, crisp, "crisp-bad", password="wrong-key")
    result = await run_popup(gw, "crisp-bad", "connection_id=site-2")
    assert result.frame["message_type"] == "error"
    assert result.frame["error_type"] == "connection_test_failed"
    assert crisp.refused == ["/v1/plugin/connect/account"]
    assert await db["connections"].find_one({"connection_id": "site-2"}) is None


async def test_an_integration_without_its_plugin_is_refused_before_the_install(gw: Gateway, crisp: FakeCrisp) -> None:
    await create_integration(gw, "crisp-fake", "crisp-bare", app_link=f"{crisp.base}/marketplace/install")
    result = await run_popup(gw, "crisp-bare", "connection_id=site-3")
    assert (result.frame["message_type"], result.frame["error_type"]) == ("error", "provider_config_err")
    await add(gw, crisp, "crisp-nolink", app_link=None)
    result = await run_popup(gw, "crisp-nolink", "connection_id=site-3")
    assert (result.frame["message_type"], result.frame["error_type"]) == ("error", "provider_config_err")
    assert crisp.installs == []


async def test_an_import_stores_the_plugins_token_as_basic(gw: Gateway, crisp: FakeCrisp) -> None:
    await add(gw, crisp, "crisp")
    body = {
        "connection_id": "moved",
        "provider_config_key": "crisp",
        "username": PLUGIN[0],
        "password": PLUGIN[1],
        "connection_config": {"website_id": WEBSITE},
    }
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    resp = await call(gw, "GET", f"/v1/website/{WEBSITE}", "moved", "crisp")
    assert resp.status == 200, await resp.text()
    assert crisp.refused == []

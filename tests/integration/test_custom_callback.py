"""A custom callback URL on the app's domain that 308-redirects to the gateway's /oauth/callback."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from ..support.oauth_provider import OAuthProvider
from ..support.procs import free_port
from .gateway_app import StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


async def test_custom_callback_url_through_a_308_redirect(
    provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway
) -> None:
    providers_file = providers_yaml(tmp_path, {"test-oauth2": provider.template()})
    async with start_gateway(providers_file=providers_file, egress_allowlist="127.0.0.0/8") as gw:
        # The app's own domain: forwards the provider's redirect, query intact, with a 308.
        app_port = free_port()

        async def forward(request: web.Request) -> web.Response:
            raise web.HTTPPermanentRedirect(f"{gw.url}/oauth/callback?{request.query_string}")

        app = web.Application()
        app.router.add_get("/integrations/callback", forward)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", app_port).start()
        custom = f"http://127.0.0.1:{app_port}/integrations/callback"
        try:
            resp = await gw.client.patch("/environment", json={"callback_url": custom}, headers=gw.auth)
            assert resp.status == 200
            await create_integration(gw, "test-oauth2", "oauth", **provider.integration_fields)
            socket = await gw.client.ws_connect("/")
            ws_client_id = json.loads((await socket.receive()).data)["ws_client_id"]
            resp = await gw.client.get(
                f"/oauth/connect/oauth?connection_id=cb-1&public_key={gw.public_key}&ws_client_id={ws_client_id}",
                allow_redirects=False,
            )
            resp.release()
            async with gw.client.session.get(resp.headers["Location"], allow_redirects=False) as authorized:
                to_app = authorized.headers["Location"]
            assert urlsplit(to_app).port == app_port  # the provider sends the browser to the app's domain
            async with gw.client.session.get(to_app) as final:  # follows the 308 to the gateway
                assert final.status == 200
                assert str(final.url).startswith(f"{gw.url}/oauth/callback")
            frame = json.loads((await socket.receive(timeout=10)).data)
            assert frame["message_type"] == "success"
            assert provider.authorize_requests[-1]["redirect_uri"] == custom
            assert provider.token_requests[-1]["redirect_uri"] == custom  # the same redirect_uri in both steps
            await socket.close()
        finally:
            await runner.cleanup()

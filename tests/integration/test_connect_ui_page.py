"""The Connect UI's page and its one route: what the page may do (its headers), and what a connect
session lists (``GET /connect/session/integrations``). The browser flows are in e2e/test_connect_ui.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

CATALOG = {
    "keyed": {
        "display_name": "Keyed",
        "auth_mode": "API_KEY",
        "proxy": {"base_url": "https://${connectionConfig.region}.keyed.test"},
        "connection_config": {
            "region": {"type": "string", "title": "Region", "example": "eu", "pattern": "^[a-z]{2}$"},
            "account": {"type": "string", "title": "Account"},
            "computed": {"type": "string", "automated": True},
        },
    },
    "popup": {
        "display_name": "Popup",
        "auth_mode": "OAUTH2",
        "authorization_url": "https://popup.test/authorize",
        "token_url": "https://popup.test/token",
    },
}


async def session_token(gw: Gateway, **body: Any) -> str:
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u-1"}, **body}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["data"]["token"]
    return token


async def test_the_page_is_framable_only_as_configured(start_gateway: StartGateway) -> None:
    async with start_gateway() as gw:
        resp = await gw.client.get("/connect-ui/?apiURL=x")
        assert resp.status == 200
        assert resp.content_type == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        assert "frame-ancestors *;" in csp  # the apps' origins are unknown: any may embed it
        assert "script-src 'self';" in csp
        assert "default-src 'none';" in csp
        assert "X-Frame-Options" not in resp.headers
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "connect-ui.js" in await resp.text()
        for asset, kind in (("connect-ui.js", "text/javascript"), ("connect-ui.css", "text/css")):
            resp = await gw.client.get(f"/connect-ui/{asset}")
            assert resp.status == 200
            assert resp.content_type == kind
    async with start_gateway(websocket_allowed_origins="https://app.example.com") as gw:
        resp = await gw.client.get("/connect-ui/")
        assert "frame-ancestors 'self' https://app.example.com;" in resp.headers["Content-Security-Policy"]
        # The page's own origin opens the WebSocket for its popups, whatever the list says.
        ws = await gw.client.ws_connect("/", origin=gw.url)
        assert (await ws.receive_json())["message_type"] == "connection_ack"
        await ws.close()


async def test_a_session_lists_what_it_allows_with_how_each_connects(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    async with start_gateway(providers_file=providers_yaml(tmp_path, CATALOG)) as gw:
        await create_integration(gw, "keyed", "keyed-1")
        await create_integration(gw, "popup", "popup-1", oauth_client_id="id", oauth_client_secret="secret")
        await create_integration(gw, "freshdesk", "fd")
        token = await session_token(
            gw,
            allowed_integrations=["keyed-1", "popup-1"],
            integrations_config_defaults={"keyed-1": {"connection_config": {"account": "acme"}}},
        )
        resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, await resp.text()
        listed = (await resp.json())["data"]
        assert listed == [
            {
                "unique_key": "keyed-1",
                "provider": "keyed",
                "display_name": "Keyed",
                "auth_mode": "API_KEY",
                "flow": "form",
                "fields": [{"name": "apiKey", "label": "API key", "kind": "password", "required": True}],
                # account is fixed by the session's backend, computed by the flow: neither is asked for
                "params": [
                    {"name": "region", "title": "Region", "example": "eu", "pattern": "^[a-z]{2}$", "optional": False}
                ],
                "form_path": "api-auth/api-key/{providerConfigKey}",
            },
            {
                "unique_key": "popup-1",
                "provider": "popup",
                "display_name": "Popup",
                "auth_mode": "OAUTH2",
                "flow": "popup",
                "fields": [],
                "params": [],
                "form_path": None,
            },
        ]
        assert "secret" not in await resp.text()

        everything = await session_token(gw)  # no allowed_integrations: the environment's all
        resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": f"Bearer {everything}"})
        assert [i["unique_key"] for i in (await resp.json())["data"]] == ["fd", "keyed-1", "popup-1"]

        resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": "Bearer nope"})
        assert resp.status == 401
        resp = await gw.client.get("/connect/session/integrations", headers=gw.auth)  # a secret key is not a session
        assert resp.status == 401

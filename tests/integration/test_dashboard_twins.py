"""A dashboard action and its API route are one operation: the same input through both stores the same.

Each step is sent twice on one real gateway: to the secret-key API for the ``dev`` environment, and
to the dashboard for ``prod``, signed in as the admin with the session's CSRF token, as a browser
posts its forms. What the store then holds for each environment is compared: integrations, keys
(told apart by when they first appeared, since their values are random), webhook settings,
signing keys and endpoint states. Neither environment's keys are pinned by settings, so both can
rotate.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from auth_gateway.app import create_app
from auth_gateway.dashboard import api as dashboard_api
from auth_gateway.dashboard.passwords import hash_password
from auth_gateway.operations.outgoing_webhooks import signing_keys
from auth_gateway.resources import STORES
from auth_gateway.settings import GatewaySettings
from keyway_shared.service import MONGO_DB
from keyway_shared.store import Environment
from keyway_shared.store.webhook_endpoints import EndpointStore

from ..support.catalog import providers_file
from .gateway_app import providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

ADMIN, PASSWORD = "admin", "the admin's long password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
API_ENV, DASHBOARD_ENV = "dev", "prod"
CATALOG = {
    name: {
        "display_name": name,
        "auth_mode": "OAUTH2",
        "authorization_url": f"https://{name}.example/authorize",
        "token_url": f"https://{name}.example/token",
    }
    for name in ("crm-one", "crm-two")
}
PRIMARY, SECONDARY = "https://hooks.example.com/primary", "https://hooks.example.com/secondary"

Client = TestClient  # type: ignore[type-arg]


class Twins:
    """The same input as an API request (``dev``) and as a dashboard form (``prod``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.csrf = ""

    @property
    def app(self) -> Any:
        return self.client.app

    async def env(self, name: str) -> Environment:
        env = await self.app[STORES].environments.get(name)
        assert env is not None
        return env

    async def sign_in(self) -> None:
        form = await (await self.client.get("/dashboard/signin")).text()
        data = {"username": ADMIN, "password": PASSWORD, "csrf_token": CSRF.findall(form)[0]}
        resp = await self.client.post("/dashboard/signin", data=data, allow_redirects=False)
        assert resp.status == 303, await resp.text()
        page = await (await self.client.get(f"/dashboard/{DASHBOARD_ENV}/settings")).text()
        self.csrf = CSRF.findall(page)[0]

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """The API call with ``dev``'s current secret key (rotations change it along the way)."""
        headers = {"Authorization": f"Bearer {(await self.env(API_ENV)).secret_key}"}
        resp = await self.client.request(method, path, json=body, headers=headers)
        return resp.status, await resp.json()

    async def dashboard(self, path: str, form: dict[str, str]) -> int:
        """A form posted on ``prod``'s dashboard: 303 when it took, else the page's error status."""
        data = form | {"csrf_token": self.csrf}
        resp = await self.client.post(f"/dashboard/{DASHBOARD_ENV}{path}", data=data, allow_redirects=False)
        assert resp.status != 403, "CSRF refused"
        return resp.status

    async def integration(self, env: str, key: str) -> dict[str, Any] | None:
        stored = await self.app[STORES].integrations.get(env, key)
        if stored is None:
            return None
        shown = dataclasses.asdict(stored)
        for name in ("environment", "created_at", "updated_at"):
            shown.pop(name)
        return shown

    async def key_story(self, env: str, story: list[dict[str, str | None]], labels: dict[str, str]) -> None:
        """The environment's keys, each named by the order it first appeared in (values are random)."""
        now = await self.env(env)
        fields = ("secret_key", "pending_secret_key", "public_key", "pending_public_key")
        story.append(
            {f: None if (v := getattr(now, f)) is None else labels.setdefault(v, f"key {len(labels)}") for f in fields}
        )

    async def signing_key_shape(self, env: str) -> list[float | None]:
        """Each signing key's remaining grace after the newest key was made, in hours (None: no end)."""
        keys = await signing_keys(self.app).keys(env)
        newest = max(k.created_at for k in keys)
        return [None if k.expires_at is None else round((k.expires_at - newest) / timedelta(hours=1), 1) for k in keys]


@pytest.fixture
async def twins(
    service_settings: dict[str, Any], encryption_key: str, tmp_path: Path, db: Any, amqp: Any
) -> AsyncIterator[Twins]:
    settings = GatewaySettings(
        **service_settings,
        encryption_key=encryption_key,
        providers_file=providers_file(providers_yaml(tmp_path, CATALOG)),
        admin_user=ADMIN,
        admin_password_hash=hash_password(PASSWORD),
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        both = Twins(client)
        await both.sign_in()
        yield both


async def test_integrations_are_stored_alike(twins: Twins) -> None:
    created = {
        "oauth_client_id": "id-1",
        "oauth_client_secret": "secret-1",
        "oauth_scopes": "read, write  admin",
        "app_link": "https://crm.example/install",
    }
    status, _ = await twins.api(
        "POST", "/config", {"provider": "crm-one", "provider_config_key": "crm", "custom": {"app_id": "42"}} | created
    )
    assert status == 200
    form = {"client_id": "id-1", "client_secret": "secret-1", "scopes": "read, write  admin"}
    form |= {"app_link": "https://crm.example/install", "app_id": "42"}
    assert await twins.dashboard("/integrations", {"provider": "crm-one", "unique_key": "crm"} | form) == 303
    stored = await twins.integration(API_ENV, "crm")
    assert stored is not None
    assert stored["oauth_scopes"] == "read,write,admin"
    assert await twins.integration(DASHBOARD_ENV, "crm") == stored

    # Edited: a new client and scopes (the dashboard keeps the stored secret when its field is blank).
    edited = {"oauth_client_id": "id-2", "oauth_client_secret": "secret-1", "oauth_scopes": "read"}
    edited |= {"app_link": "https://crm.example/v2", "custom": {"app_id": "43"}}
    status, _ = await twins.api("PUT", "/config", {"provider": "crm-one", "provider_config_key": "crm"} | edited)
    assert status == 200
    form = {"client_id": "id-2", "scopes": "read", "app_link": "https://crm.example/v2", "app_id": "43"}
    assert await twins.dashboard("/integrations/crm", form) == 303
    stored = await twins.integration(API_ENV, "crm")
    assert stored is not None
    assert (stored["oauth_client_id"], stored["custom"]) == ("id-2", {"app_id": "43"})
    assert await twins.integration(DASHBOARD_ENV, "crm") == stored

    # Moved to another provider: the dashboard's action once left the provider as it was.
    moved = {"provider": "crm-two", "provider_config_key": "crm"} | edited
    status, body = await twins.api("PUT", "/config", moved)
    assert (status, body) == (200, {"config": {"unique_key": "crm", "provider": "crm-two"}})
    request = make_mocked_request("POST", f"/dashboard/{DASHBOARD_ENV}/integrations/crm", app=twins.app)
    await dashboard_api.update_integration(request, await twins.env(DASHBOARD_ENV), moved)
    stored = await twins.integration(API_ENV, "crm")
    assert stored is not None
    assert stored["provider"] == "crm-two"
    assert await twins.integration(DASHBOARD_ENV, "crm") == stored

    # Refused alike: an OAuth integration without its client secret.
    status, body = await twins.api("POST", "/config", {"provider": "crm-one", "provider_config_key": "bare"})
    assert (status, body["error"]["code"]) == (400, "missing_client_id")
    assert await twins.dashboard("/integrations", {"provider": "crm-one", "unique_key": "bare"}) == 400
    assert await twins.integration(API_ENV, "bare") is await twins.integration(DASHBOARD_ENV, "bare") is None

    assert (await twins.api("DELETE", "/config/crm"))[0] == 200
    assert await twins.dashboard("/integrations/crm/delete", {}) == 303
    assert await twins.integration(API_ENV, "crm") is await twins.integration(DASHBOARD_ENV, "crm") is None


async def test_key_rotations_are_stored_alike(twins: Twins) -> None:
    steps = [
        ("rotate", "secret", 303),
        ("activate", "secret", 303),
        ("activate", "secret", 409),  # nothing pending any more
        ("rotate", "public", 303),
        ("revert", "public", 303),
    ]
    api_story: list[dict[str, str | None]] = []
    dashboard_story: list[dict[str, str | None]] = []
    api_labels: dict[str, str] = {}
    dashboard_labels: dict[str, str] = {}
    await twins.key_story(API_ENV, api_story, api_labels)
    await twins.key_story(DASHBOARD_ENV, dashboard_story, dashboard_labels)
    for action, kind, dashboard_status in steps:
        status, _ = await twins.api("POST", f"/environment/{action}-key", {"type": kind})
        assert status == (200 if dashboard_status == 303 else dashboard_status)
        assert await twins.dashboard("/settings/keys", {"kind": kind, "action": action}) == dashboard_status
        await twins.key_story(API_ENV, api_story, api_labels)
        await twins.key_story(DASHBOARD_ENV, dashboard_story, dashboard_labels)
    assert api_story[1]["pending_secret_key"] == "key 2"
    assert api_story[2]["secret_key"] == "key 2"
    assert dashboard_story == api_story


async def test_webhook_settings_are_stored_alike(twins: Twins) -> None:
    settings = {"primary_url": PRIMARY, "secondary_url": SECONDARY, "on_auth_creation": True}
    status, _ = await twins.api(
        "PATCH", "/environment", {"webhook_settings": settings | {"on_auth_refresh_error": False}}
    )
    assert status == 200
    form = {"section": "webhooks", "primary_url": PRIMARY, "secondary_url": SECONDARY, "on_auth_creation": "on"}
    assert await twins.dashboard("/settings", form) == 303
    stored = (await twins.env(API_ENV)).webhooks
    assert (stored.primary_url, stored.on_auth_refresh_error) == (PRIMARY, False)
    assert (await twins.env(DASHBOARD_ENV)).webhooks == stored

    # Signing keys: a rotation keeps the current key signing for the default grace period.
    assert (await twins.api("POST", "/webhooks/signing-keys/rotate"))[0] == 200
    assert await twins.dashboard("/settings/webhook-keys/rotate", {}) == 303
    shape = await twins.signing_key_shape(API_ENV)
    assert shape == [None, 24.0]
    assert await twins.signing_key_shape(DASHBOARD_ENV) == shape

    # An endpoint the dispatcher disabled (it answered 410), enabled again; an unknown URL refused.
    endpoints = EndpointStore(twins.app[MONGO_DB])
    for env in (API_ENV, DASHBOARD_ENV):
        assert await endpoints.gone(env, PRIMARY) is not None
    status, body = await twins.api("POST", "/webhooks/endpoints/enable", {"url": PRIMARY})
    assert (status, body["was_disabled"]) == (200, True)
    assert await twins.dashboard("/settings/endpoints/enable", {"url": PRIMARY}) == 303
    state = await endpoints.get(API_ENV, PRIMARY)
    assert state.disabled is False
    assert dataclasses.replace(await endpoints.get(DASHBOARD_ENV, PRIMARY), environment=API_ENV) == state
    status, body = await twins.api("POST", "/webhooks/endpoints/enable", {"url": "https://elsewhere.example/"})
    assert (status, body["error"]["code"]) == (404, "unknown_endpoint")
    assert await twins.dashboard("/settings/endpoints/enable", {"url": "https://elsewhere.example/"}) == 404

    # A replay of a delivery this environment never made is refused alike.
    status, body = await twins.api("POST", "/webhooks/deliveries/nope/replay")
    assert (status, body["error"]["code"]) == (404, "unknown_delivery")
    assert await twins.dashboard("/settings/deliveries/replay", {"delivery_id": "nope"}) == 404


async def test_webhook_signing_key_rotations_are_stored_alike(twins: Twins) -> None:
    """The Nango webhook signing key: replaced at once through both, and nothing else with it."""
    before = {name: await twins.env(name) for name in (API_ENV, DASHBOARD_ENV)}
    status, body = await twins.api("POST", "/environment/webhook-signing-key/rotate")
    assert status == 200
    assert await twins.dashboard("/settings/webhook-signing-key/rotate", {}) == 303
    for name, old in before.items():
        now = await twins.env(name)
        assert now.webhook_signing_key not in {old.webhook_signing_key, old.secret_key}
        assert dataclasses.replace(now, webhook_signing_key="", updated_at=None) == dataclasses.replace(
            old, webhook_signing_key="", updated_at=None
        )
    assert (await twins.env(API_ENV)).webhook_signing_key == body["data"]["webhook_signing_key"]

    # The settings page shows it only once revealed (a logged step), as it shows the other keys.
    key = (await twins.env(DASHBOARD_ENV)).webhook_signing_key
    page = await (await twins.client.get(f"/dashboard/{DASHBOARD_ENV}/settings")).text()
    assert key not in page
    data = {"what": "webhook_signing_key", "csrf_token": twins.csrf}
    resp = await twins.client.post(f"/dashboard/{DASHBOARD_ENV}/settings/reveal", data=data)
    assert resp.status == 200
    assert key in await resp.text()

"""BILL end to end against a fake Bill Connect API on 127.0.0.1 (tests/support/fake_bill.py).

``POST /auth/bill/{key}`` as @nangohq/frontend 0.71.10 posts it (``{username, password,
organization_id, dev_key}``, Nango's ``postBill.ts``): the login gives a session, stored with the login
(encrypted) and a 35-minute expiry; a refresh signs in again; the proxy sends ``sessionId`` and
``devKey``, which the fake requires.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..support.clock import SteppedClock
from ..support.fake_bill import FakeBill
from ..support.polling import eventually
from .flow_helpers import get_connection
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .proxy_setup import call
from .refresher_world import StartRefresherWorld
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def bill() -> AsyncIterator[FakeBill]:
    async with FakeBill() as fake:
        yield fake


@pytest.fixture
async def gw(start_gateway: StartGateway, bill: FakeBill, tmp_path: Path) -> AsyncIterator[Gateway]:
    providers = providers_yaml(tmp_path, {"bill-fake": bill.template()})
    async with start_gateway(providers_file=providers, egress_allowlist="127.0.0.0/8") as gateway:
        await create_integration(gateway, "bill-fake", "bill")
        yield gateway


async def test_a_login_becomes_a_session_the_proxy_sends(gw: Gateway, bill: FakeBill, db: Any) -> None:
    resp = await gw.client.post(f"/auth/bill/bill?public_key={gw.public_key}&connection_id=b1", json=bill.login)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"connectionId": "b1", "providerConfigKey": "bill"}
    [session] = bill.sessions

    connection = await get_connection(gw, "b1", "bill")
    credentials = connection["credentials"]
    assert list(credentials) == [
        "type", "username", "password", "organization_id", "dev_key", "raw", "session_id", "user_id", "expires_at",
    ]  # fmt: skip
    assert (credentials["type"], credentials["session_id"], credentials["user_id"]) == ("BILL", session, "00601XYZ")
    assert (credentials["username"], credentials["dev_key"]) == (bill.username, bill.dev_key)
    expires = datetime.fromisoformat(credentials["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=34) < expires - datetime.now(UTC) <= timedelta(minutes=35)
    stored = await db["connections"].find_one({"connection_id": "b1"})
    assert stored["auth_mode"] == "BILL"
    assert bill.password not in json.dumps(stored, default=str)
    assert session not in json.dumps(stored, default=str)

    resp = await call(gw, "GET", "/v3/vendors", "b1", "bill")
    assert resp.status == 200, await resp.text()
    assert bill.api_calls == [{"path": "/connect/v3/vendors", "session": session}]

    # A refresh signs in again; the old session no longer works, the proxy uses the new one.
    resp = await gw.client.get("/connection/b1?provider_config_key=bill&force_refresh=true", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    renewed = (await resp.json())["credentials"]["session_id"]
    assert renewed != session
    assert len(bill.logins) == 2
    del bill.sessions[session]
    resp = await call(gw, "GET", "/v3/bills", "b1", "bill")
    assert resp.status == 200, await resp.text()
    assert bill.api_calls[-1]["session"] == renewed
    assert bill.refused == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"dev_key": ""}, ["dev_key"]),
        ({"organization_id": None}, ["organization_id"]),
        ({"extra": "x"}, []),
    ],
)
async def test_a_body_nangos_schema_refuses_is_invalid_body(
    gw: Gateway, bill: FakeBill, db: Any, change: dict[str, Any], path: list[str]
) -> None:
    body = {k: v for k, v in (bill.login | change).items() if v is not None}
    resp = await gw.client.post(f"/auth/bill/bill?public_key={gw.public_key}&connection_id=bad", json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"]["code"] == "invalid_body"
    assert [issue["path"] for issue in answer["error"]["errors"]] == [path]
    assert bill.logins == []
    assert await db["connections"].find_one({"connection_id": "bad"}) is None


async def test_a_refused_login_is_answered_and_stores_nothing(gw: Gateway, bill: FakeBill, db: Any) -> None:
    wrong = bill.login | {"password": "not-it"}
    resp = await gw.client.post(f"/auth/bill/bill?public_key={gw.public_key}&connection_id=no", json=wrong)
    assert resp.status == 400
    answer = await resp.json()
    assert_envelope(answer, "invalid_bill_credentials")
    assert "not-it" not in json.dumps(answer)
    assert await db["connections"].find_one({"connection_id": "no"}) is None

    # Another mode's integration is not connected this way.
    await create_integration(gw, "posthog", "ph")
    resp = await gw.client.post(f"/auth/bill/ph?public_key={gw.public_key}&connection_id=no", json=bill.login)
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_auth_mode")


async def test_the_refresher_signs_in_again_before_the_session_ends(
    start_refresher_world: StartRefresherWorld,
) -> None:
    """The refresher's clock runs 21 minutes on: the 35-minute session is due 15 minutes before its end."""
    clock = SteppedClock(start=datetime.now(UTC))
    async with (
        FakeBill() as bill,
        start_refresher_world(templates={"bill-fake": bill.template()}, clock=clock) as world,
    ):
        resp = await world.gw.client.post(
            f"/auth/bill/bill-fake?public_key={world.gw.public_key}&connection_id=kept", json=bill.login
        )
        assert resp.status == 200, await resp.text()
        first = (await world.doc("kept"))["refresh_due_at"]
        await clock.step(19 * 60)
        assert len(bill.logins) == 1  # not yet due

        async def signed_in_again() -> bool:
            await clock.step(30)
            return len(bill.logins) >= 2

        await eventually(signed_in_again, what="the refresher to sign in to Bill again", timeout=15)
        assert timedelta(minutes=19) < first.replace(tzinfo=UTC) - datetime.now(UTC) < timedelta(minutes=21)


async def test_an_imported_login_signs_in_at_its_first_use(gw: Gateway, bill: FakeBill) -> None:
    body = {"connection_id": "moved", "provider_config_key": "bill", **bill.login}
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    assert bill.logins == []
    resp = await call(gw, "GET", "/v3/vendors", "moved", "bill")  # due now: the read signs in first
    assert resp.status == 200, await resp.text()
    assert len(bill.logins) == 1
    assert bill.refused == []
    resp = await gw.client.post("/connection", json=body | {"connection_id": "m2", "dev_key": ""}, headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_dev_key")

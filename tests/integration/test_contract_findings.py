"""What the contract fuzzer (test_openapi_contract.py) found in the gateway's query and body parsing,
each as the request that showed it, against a real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        yield gateway


@pytest.mark.parametrize("limit", ["²", "٣", "1.5", "-1", "0", "501"])
async def test_a_log_page_limit_that_is_not_a_plain_number_is_a_400(gw: Gateway, limit: str) -> None:
    # "²" is a digit to str.isdigit and not a number to int(): it was a 500.
    resp = await gw.client.get("/logs/operations", params={"limit": limit}, headers=gw.auth)
    assert resp.status == 400, await resp.text()
    assert_envelope(await resp.json(), "invalid_query_params")


async def test_a_revocation_body_is_read_as_json_schema_reads_it(gw: Gateway) -> None:
    await create_integration(gw, "posthog", "ph")
    for body in ({"delete": "true"}, {"concurrency": True}, {"concurrency": "4"}, {"concurrency": 4.5}, [1]):
        resp = await gw.client.post("/config/ph/revoke", json=body, headers=gw.auth)
        assert resp.status == 400, (body, await resp.text())
        assert_envelope(await resp.json(), "invalid_body")
    resp = await gw.client.post("/config/ph/revoke", data=b"{nope", headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_json")
    # 4.0 is the integer 4 to JSON Schema, which the document promises
    resp = await gw.client.post("/config/ph/revoke", json={"delete": False, "concurrency": 4.0}, headers=gw.auth)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["delete"] is False


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/webhooks/replay", {"since": 0}),  # lax mode read 0 as 1970-01-01
        ("POST", "/webhooks/replay", {"since": "2026-01-01T00:00:00Z", "until": -617932295}),
        ("POST", "/webhooks/signing-keys/rotate", {"grace_seconds": False}),  # lax mode read false as 0
        ("PATCH", "/environment", {"webhook_settings": {"on_auth_refresh_error": "yes"}}),
    ],
)
async def test_a_body_value_of_the_wrong_json_type_is_a_400(
    gw: Gateway, method: str, path: str, body: dict[str, object]
) -> None:
    resp = await gw.client.request(method, path, json=body, headers=gw.auth)
    assert resp.status == 400, await resp.text()
    assert_envelope(await resp.json(), "invalid_body")

"""Bodies and query values the gateway cannot hold or store are a 4xx naming the problem, never a 500.

Each attack goes over HTTP to a real gateway: JSON nested thousands deep (once a RecursionError),
integers of thousands of digits (Python's int conversion limit) or past 64 bits (BSON's), lone
UTF-16 surrogates in strings and keys, ``NaN``/``Infinity``/``1e400``, and ``$``/``.``/NUL keys in
objects stored as documents, from the body or the query's ``params[...]``. A stranger's body is
never read: no key, a 401, whatever the body. A connection stored with metadata nested hundreds deep
before bodies were limited (put in the database directly here) no longer takes down the listing, nor
keeps ``last_fetched_at`` retrying.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from auth_gateway.operations.fetch_recorder import FETCH_RECORDER

from ..support.polling import eventually
from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


def nested(depth: int) -> Any:
    """An object ``depth`` levels deep ({"a": {"a": ... 1}})."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


# (raw body, the envelope's code, words its message must hold)
BAD_BODIES: dict[str, tuple[bytes, str, str]] = {
    "nested 5000 deep": (b'{"metadata":' + b'{"a":' * 5000 + b"1" + b"}" * 5001, "invalid_body", "nested"),
    "arrays 100000 deep": (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid_body", "nested"),
    "nested 25 deep": (json.dumps({"metadata": nested(24)}).encode(), "invalid_body", "nested more than 20"),
    "5000-digit integer": (b'{"metadata": {"n": ' + b"9" * 5000 + b"}}", "invalid_body", "integer"),
    "integer past 64 bits": (b'{"metadata": {"n": 18446744073709551616}}', "invalid_body", "integer"),
    "lone surrogate": (b'{"metadata": {"s": "\\ud800"}}', "invalid_body", "surrogate"),
    "lone surrogate key": (b'{"metadata": {"\\udc00": 1}}', "invalid_body", "surrogate"),
    "NaN": (b'{"metadata": {"n": NaN}}', "invalid_json", "NaN"),
    "Infinity": (b'{"metadata": {"n": Infinity}}', "invalid_json", "Infinity"),
    "-Infinity": (b'{"metadata": {"n": -Infinity}}', "invalid_json", "-Infinity"),
    "1e400": (b'{"metadata": {"n": 1e400}}', "invalid_body", "too large"),
}

# Every route that reads a JSON body with the secret key.
SECRET_ROUTES = [
    ("POST", "/config"),
    ("PUT", "/config"),
    ("POST", "/connection"),
    ("POST", "/connection/metadata"),
    ("PATCH", "/connection/metadata"),
    ("POST", "/connection/c1/metadata?provider_config_key=ph"),
    ("PATCH", "/connection/c1/metadata?provider_config_key=ph"),
    ("POST", "/connect/sessions"),
    ("POST", "/connect/links"),
    ("PATCH", "/environment"),
    ("POST", "/environment/rotate-key"),
    ("POST", "/environment/activate-key"),
    ("POST", "/environment/revert-key"),
    ("POST", "/webhooks/replay"),
    ("POST", "/webhooks/signing-keys/rotate"),
    ("POST", "/webhooks/endpoints/enable"),
]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "posthog", "ph")
        yield gateway


async def connect(gw: Gateway, connection_id: str) -> None:
    resp = await gw.client.post(
        f"/api-auth/api-key/ph?connection_id={connection_id}&public_key={gw.public_key}", json={"apiKey": "k"}
    )
    assert resp.status == 200, await resp.text()


async def test_a_bad_body_is_a_400_naming_the_problem_on_every_route(gw: Gateway) -> None:
    routes = [*SECRET_ROUTES, ("POST", f"/api-auth/api-key/ph?connection_id=c1&public_key={gw.public_key}")]
    for name, (raw, code, words) in BAD_BODIES.items():
        for method, path in routes:
            resp = await gw.client.request(method, path, data=raw, headers=gw.auth)
            body = await resp.json()
            assert resp.status == 400, (name, method, path, body)
            assert_envelope(body, code)
            assert words in body["error"]["message"], (name, method, path, body)


async def test_without_a_key_the_body_is_never_read(gw: Gateway) -> None:
    for name in ("nested 5000 deep", "5000-digit integer", "lone surrogate key", "NaN"):
        raw, _code, _words = BAD_BODIES[name]
        for method, path in SECRET_ROUTES:
            resp = await gw.client.request(method, path, data=raw)
            assert resp.status == 401, (name, method, path, await resp.text())
            assert_envelope(await resp.json(), "missing_auth_header")


async def test_metadata_deeper_than_the_limit_is_not_stored(gw: Gateway, db: Any) -> None:
    await connect(gw, "c1")
    base = {"connection_id": "c1", "provider_config_key": "ph"}
    deepest = nested(19)  # the body is one level more: 20, the limit
    resp = await gw.client.post("/connection/metadata", json={**base, "metadata": deepest}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    resp = await gw.client.post("/connection/metadata", json={**base, "metadata": nested(500)}, headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_body")
    stored = await db["connections"].find_one({"connection_id": "c1"})
    assert stored["metadata"] == deepest


async def test_keys_mongodb_refuses_are_refused_in_stored_objects(gw: Gateway, db: Any) -> None:
    await connect(gw, "c1")
    for metadata in ({"$set": {"a": 1}}, {"a.b": 1}, {"ok": {"deeper": [{"$where": "x"}]}}, {"nul\u0000key": 1}):
        imported = {"connection_id": "c2", "provider_config_key": "ph", "api_key": "k"}
        for method, path, body in [
            (
                "POST",
                "/connection/metadata",
                {"connection_id": "c1", "provider_config_key": "ph", "metadata": metadata},
            ),
            ("PATCH", "/connection/c1/metadata?provider_config_key=ph", metadata),
            ("POST", "/connection", {**imported, "metadata": metadata}),
            ("POST", "/connection", {**imported, "connection_config": metadata}),
        ]:
            resp = await gw.client.request(method, path, json=body, headers=gw.auth)
            answer = await resp.json()
            assert resp.status == 400, (metadata, path, answer)
            assert_envelope(answer, "invalid_body")
            assert "may not start with '$'" in answer["error"]["message"]
    assert (await db["connections"].find_one({"connection_id": "c1"})).get("metadata") is None
    assert await db["connections"].count_documents({"connection_id": "c2"}) == 0


async def test_connection_config_keys_from_the_query_are_refused_the_same_way(gw: Gateway, db: Any) -> None:
    for query in ("params[$where]=1", "params[a.b]=1", "params[x%00y]=1"):
        resp = await gw.client.post(
            f"/api-auth/api-key/ph?connection_id=c1&public_key={gw.public_key}&{query}", json={"apiKey": "k"}
        )
        answer = await resp.json()
        assert resp.status == 400, (query, answer)
        assert_envelope(answer, "invalid_query_params")
    assert await db["connections"].count_documents({}) == 0


async def test_credentials_are_one_encrypted_value_so_their_keys_are_free(gw: Gateway) -> None:
    await create_integration(gw, "github", "gh", oauth_client_id="i", oauth_client_secret="s")
    body = {
        "connection_id": "c3",
        "provider_config_key": "gh",
        "access_token": "t",
        "no_expiration": True,
        "raw": {"$odd": {"a.b": 1}},
    }
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()


async def test_an_old_deep_document_leaves_the_listing_and_the_connection_readable(gw: Gateway, db: Any) -> None:
    await connect(gw, "deep")
    await connect(gw, "fine")
    resp = await gw.client.post(
        "/connection/metadata",
        json={"connection_id": "fine", "provider_config_key": "ph", "metadata": {"plan": "pro"}},
        headers=gw.auth,
    )
    assert resp.status == 201
    # As a gateway without the depth limit stored it: the embedded server takes it, then fails any
    # projection of the document (MongoDB itself refuses documents over 100 levels).
    await db["connections"].update_one({"connection_id": "deep"}, {"$set": {"metadata": nested(600)}})

    resp = await gw.client.get("/connection", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    listed = {c["connection_id"]: c for c in (await resp.json())["connections"]}
    assert listed["fine"]["metadata"] == {"plan": "pro"}
    assert listed["deep"]["metadata"] is None  # too deep to answer; the connection is still listed
    resp = await gw.client.get("/connection/deep?provider_config_key=ph", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["credentials"]["apiKey"] == "k"


async def test_a_write_the_database_keeps_refusing_is_dropped_not_retried_forever(gw: Gateway, db: Any) -> None:
    await connect(gw, "deep")
    await connect(gw, "fine")
    await db["connections"].update_one({"connection_id": "deep"}, {"$set": {"metadata": nested(600)}})
    recorder = gw.client.app[FETCH_RECORDER]
    with capture_logs() as logs:
        for connection_id in ("deep", "fine"):  # both noted: one batch, which the server refuses whole
            resp = await gw.client.get(f"/connection/{connection_id}?provider_config_key=ph", headers=gw.auth)
            assert resp.status == 200

        def dropped() -> list[dict[str, Any]]:
            return [entry for entry in logs if "dropped" in entry["event"]]

        async def fine_recorded() -> bool:
            doc = await db["connections"].find_one({"connection_id": "fine"})
            return doc.get("last_fetched_at") is not None

        await eventually(fine_recorded, what="the other connection's last_fetched_at, despite its batch")
        await eventually(lambda: _async(dropped()), what="the refused write given up on")
        for _ in range(3):
            await recorder.flush()  # nothing left to try: no more attempts, no more warnings
    assert len(dropped()) == 1
    assert dropped()[0]["connection_id"] == "deep"
    attempts = [entry for entry in logs if entry["event"].startswith("could not record")]
    assert attempts == []  # the refusal was never taken for an outage to retry
    assert (await db["connections"].find_one({"connection_id": "deep"})).get("last_fetched_at") is None


async def _async(value: Any) -> Any:
    return value


async def test_odd_query_values_are_a_400(gw: Gateway) -> None:
    for query in ("limit=" + "9" * 5000, "limit=1e400", "limit=abc", "limit=%C2%B2", "limit=-1", "limit=0"):
        for path in ("/logs/operations", "/webhooks/deliveries"):
            resp = await gw.client.get(f"{path}?{query}", headers=gw.auth)
            assert resp.status == 400, (path, query[:20], await resp.text())
            assert_envelope(await resp.json(), "invalid_query_params")

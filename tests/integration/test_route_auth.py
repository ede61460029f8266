"""Every route of the table refuses a caller without its credential, or with the other one.

Driven by the route table itself, over HTTP to a real gateway: each line's auth column decides what
a request without a credential, or with the wrong kind of key, must be answered. A key is checked
before anything else, so each request also carries a body the route would refuse: the answer is
about the key. ``tests/unit/test_route_auth.py`` checks the other half: each line's column is what
its view's wrapper checks.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import get_args

import pytest
from aiohttp import ClientResponse

from auth_gateway.dashboard.passwords import hash_password
from auth_gateway.openapi_spec import AuthKind, Route
from auth_gateway.routes import ROUTES

from .gateway_app import Gateway, StartGateway
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

NOT_JSON = b'{"not json'
# What a request without the credential, or with the wrong one, may hear: (headers, query, code).
Attempt = tuple[dict[str, str], dict[str, str], str]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    dashboard = {"admin_user": "admin", "admin_password_hash": hash_password("a long dashboard password")}
    async with start_gateway(**dashboard) as gateway:
        yield gateway


def attempts(gw: Gateway, auth: AuthKind) -> list[Attempt]:
    secret, public = {"Authorization": f"Bearer {gw.secret_key}"}, {"Authorization": f"Bearer {gw.public_key}"}
    by_kind: dict[AuthKind, list[Attempt]] = {
        "secret_key": [
            ({}, {}, "missing_auth_header"),
            (public, {}, "unknown_user_account"),  # the public key is not a secret key
        ],
        "secret_key_or_connect_session": [
            ({}, {}, "missing_auth_header"),
            (public, {}, "unknown_user_account"),
            ({"Authorization": "Bearer nango_connect_session_unknown"}, {}, "unknown_connect_session_token"),
            ({}, {"connect_session_token": "nango_connect_session_unknown"}, "missing_auth_header"),  # header only
        ],
        "public_key": [
            ({}, {}, "missing_public_key"),
            (secret, {}, "missing_public_key"),  # a backend's header opens no browser route
            ({}, {"public_key": gw.secret_key}, "unknown_user_account"),
            ({}, {"connect_session_token": "nango_connect_session_unknown"}, "unknown_connect_session_token"),
        ],
        "connect_session": [
            ({}, {}, "invalid_connect_session_token"),
            (secret, {}, "invalid_connect_session_token"),
            ({"Authorization": "Bearer nango_connect_session_unknown"}, {}, "unknown_connect_session_token"),
        ],
        "dashboard_session": [({}, {}, "signin"), (secret, {}, "signin")],
        "none": [],
    }
    return by_kind[auth]


def concrete(route: Route) -> str:
    """The route's path with a value for each parameter (``dev`` for the dashboard's environment)."""
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: "dev" if m[1] == "env" else "p1", route.path)


async def send(gw: Gateway, route: Route, headers: dict[str, str], query: dict[str, str]) -> ClientResponse:
    body = NOT_JSON if route.body is not None else None
    kind = {"Content-Type": "application/json"} if body is not None else {}
    return await gw.client.request(
        route.method,
        concrete(route),
        params=query,
        data=body,
        headers={**kind, **headers},
        allow_redirects=False,
    )


async def assert_refused(resp: ClientResponse, route: Route, code: str) -> None:
    where = (route.method, route.path, code)
    if route.auth == "dashboard_session":
        assert resp.status == 303, where
        assert resp.headers["Location"].startswith("/dashboard/signin"), where
    elif route.pages:  # a browser tab opened it: the popup's page says why (and tells the SDK)
        assert resp.status == 401, where
        assert resp.content_type == "text/html", where
        assert code in await resp.text(), where
    else:
        assert resp.status == 401, where
        assert_envelope(await resp.json(), code)


async def test_every_route_refuses_a_caller_without_its_credential(gw: Gateway) -> None:
    checked: set[str] = set()
    for route in ROUTES:
        for headers, query, code in attempts(gw, route.auth):
            await assert_refused(await send(gw, route, headers, query), route, code)
            checked.add(route.auth)
    assert checked == set(get_args(AuthKind)) - {"none"}  # a new kind of credential needs its attempts here


async def test_the_attempts_do_not_refuse_the_right_credential(gw: Gateway) -> None:
    """The same requests, with the credential the line names, get past it: the refusals above are the key's."""
    secret = {"Authorization": f"Bearer {gw.secret_key}"}
    resp = await gw.client.get("/config", headers=secret)
    assert resp.status == 200
    resp = await gw.client.post("/config", data=NOT_JSON, headers={**secret, "Content-Type": "application/json"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_json")
    resp = await gw.client.post("/api-auth/api-key/p1", params={"public_key": gw.public_key, "connection_id": "c1"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "unknown_provider_config")

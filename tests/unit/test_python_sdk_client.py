"""keyway-client's edges, against small fake gateways on 127.0.0.1: how every kind of error answer
maps to the exception tree, what a missing or unreadable answer becomes, what each request carries,
and how the proxy tells Keyway's refusals from the upstream's answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keyway_client import (
    ApiError,
    AsyncClient,
    AuthenticationError,
    Client,
    NotFoundError,
    RateLimitedError,
    Timeout,
    TransportError,
    ValidationError,
)
from keyway_client._errors import error_from_response

from ..support.procs import free_port

SECRET = "0b1c7f3e-5d3a-4c55-9f0e-2a4b6c8d0e1f"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def envelope(code: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    inner: dict[str, Any] = {"message": message or code, "code": code, **extra}
    return {"error": inner, "type": code}


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "code"),
    [
        (401, envelope("unknown_user_account"), {}, AuthenticationError, "unknown_user_account"),
        (401, envelope("missing_auth_header"), {}, AuthenticationError, "missing_auth_header"),
        (404, envelope("unknown_connection"), {}, NotFoundError, "unknown_connection"),
        (400, envelope("unknown_provider_config"), {}, NotFoundError, "unknown_provider_config"),
        (404, envelope("not_found"), {}, NotFoundError, "not_found"),
        (429, envelope("too_many_request"), {"Retry-After": "12"}, RateLimitedError, "too_many_request"),
        (409, envelope("duplicate_provider_config"), {}, ValidationError, "duplicate_provider_config"),
        (400, envelope("missing_client_id"), {}, ValidationError, "missing_client_id"),
        (422, envelope("invalid_body"), {}, ValidationError, "invalid_body"),
        (500, envelope("generic_error_support", payload="e-1"), {}, ApiError, "generic_error_support"),
        (405, envelope("method_not_allowed"), {}, ApiError, "method_not_allowed"),
        (
            400,
            {"error": "Missing param", "type": "missing_connection", "payload": {}},
            {},
            ValidationError,
            "missing_connection",
        ),
        (502, None, {}, ApiError, None),  # a load balancer's page: no envelope
        (401, None, {}, AuthenticationError, None),
    ],
)
def test_error_answers_map_to_the_tree(
    status: int, body: Any, headers: dict[str, str], cls: type[ApiError], code: str | None
) -> None:
    error = error_from_response(status, headers, body, "<html>Bad gateway</html>" if body is None else json.dumps(body))
    assert type(error) is cls
    assert (error.status, error.code) == (status, code)
    assert error.body == body
    if body is None:
        assert error.message == "<html>Bad gateway</html>"
    if cls is RateLimitedError:
        assert isinstance(error, RateLimitedError)
        assert error.retry_after == 12.0


def test_error_details_are_kept() -> None:
    errors = [{"code": "invalid_type", "message": "Expected object", "path": ["metadata"]}]
    error = error_from_response(
        400, {}, {"error": {"code": "invalid_body", "errors": errors}, "type": "invalid_body"}, ""
    )
    assert isinstance(error, ValidationError)
    assert (error.errors, error.message) == (errors, "invalid_body")
    unknown = envelope("unknown_connection", "No connection", payload={"connectionId": "c"})
    error = error_from_response(404, {}, unknown, "")
    assert (error.message, error.payload) == ("No connection", {"connectionId": "c"})
    assert str(error) == "404 unknown_connection: No connection"
    limited = error_from_response(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None, "")
    assert isinstance(limited, RateLimitedError)
    assert limited.retry_after is None


@pytest.fixture
async def fake() -> AsyncIterator[tuple[TestServer, list[web.Request], dict[str, Handler]]]:
    """A gateway stand-in: ``routes[path] = handler``; every request is kept."""
    seen: list[web.Request] = []
    routes: dict[str, Handler] = {}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await request.read()
        for prefix, handler in routes.items():
            if request.path.startswith(prefix):
                return await handler(request)
        return web.json_response(envelope("not_found"), status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen, routes
    await server.close()


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_requests_carry_the_key_flags_and_escaped_ids(fake: Any) -> None:
    server, seen, routes = fake

    async def connection(request: web.Request) -> web.Response:
        return web.json_response(
            {"connection_id": request.match_info.get("id", "x"), "provider_config_key": "k", "credentials": {}}
        )

    routes["/connection/"] = connection
    async with AsyncClient(host=url(server) + "/", secret_key=SECRET, user_agent="my-app/1") as keyway:
        await keyway.get_connection("k", "a/b c?d", force_refresh=True)
    request = seen[-1]
    assert request.raw_path.split("?")[0] == "/connection/a%2Fb%20c%3Fd"
    assert dict(request.query) == {"provider_config_key": "k", "force_refresh": "true", "refresh_token": "false"}
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["User-Agent"].startswith("keyway-client-python/")
    assert request.headers["User-Agent"].endswith("; my-app/1")
    assert SECRET not in repr(keyway)


async def test_nothing_listening_is_a_transport_error() -> None:
    async with AsyncClient(host=f"http://127.0.0.1:{free_port()}", secret_key=SECRET) as keyway:
        with pytest.raises(TransportError, match="GET /config"):
            await keyway.list_integrations()


async def test_a_slow_gateway_times_out(fake: Any) -> None:
    server, _seen, routes = fake

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"configs": []})

    routes["/config"] = slow
    async with AsyncClient(host=url(server), secret_key=SECRET, timeout=Timeout(total=0.2)) as keyway:
        with pytest.raises(TransportError, match="Timeout"):
            await keyway.list_integrations()


async def test_unreadable_answers(fake: Any) -> None:
    server, _seen, routes = fake

    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>ok</html>", content_type="text/html")

    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad gateway</html>", content_type="text/html")

    async def wrong_shape(_request: web.Request) -> web.Response:
        return web.json_response({"items": []})

    routes["/config/"] = bad_gateway
    routes["/config"] = html
    routes["/connection"] = wrong_shape
    async with AsyncClient(host=url(server), secret_key=SECRET) as keyway:
        with pytest.raises(TransportError, match="not JSON"):
            await keyway.list_integrations()
        with pytest.raises(ApiError) as caught:
            await keyway.get_integration("x")
        assert (type(caught.value), caught.value.status, caught.value.code) == (ApiError, 502, None)
        with pytest.raises(TransportError, match="'connections'"):
            await keyway.list_connections()


async def test_proxy_tells_keyway_refusals_from_upstream_answers(fake: Any) -> None:
    server, seen, routes = fake

    async def proxied(request: web.Request) -> web.Response:
        if request.path.endswith("/refused"):
            return web.json_response(envelope("missing_base_api_url"), status=400)
        # an upstream whose own error body looks a bit like ours, but is not our envelope
        return web.json_response({"error": {"code": "bad_thing"}}, status=400)

    routes["/proxy/"] = proxied
    async with AsyncClient(host=url(server), secret_key=SECRET) as keyway:
        with pytest.raises(ValidationError) as caught:
            await keyway.get(provider_config_key="k", connection_id="c", endpoint="/refused")
        assert caught.value.code == "missing_base_api_url"
        answer = await keyway.post(
            provider_config_key="k",
            connection_id="c",
            endpoint="items",
            params={"flag": True, "n": 2},
            headers={"X-Trace": "t"},
            data={"a": 1},
            retries=2,
            retry_on=[409, 425],
            base_url_override="https://api.example",
        )
    assert (answer.status, answer.ok, answer.json()) == (400, False, {"error": {"code": "bad_thing"}})
    request = seen[-1]
    assert (request.method, request.path, dict(request.query)) == ("POST", "/proxy/items", {"flag": "true", "n": "2"})
    sent = request.headers
    assert (sent["Connection-Id"], sent["Provider-Config-Key"], sent["Base-Url-Override"]) == (
        "c",
        "k",
        "https://api.example",
    )
    assert (sent["Retries"], sent["Retry-On"], sent["Nango-Proxy-X-Trace"]) == ("2", "409,425", "t")
    assert sent["Content-Type"] == "application/json"


async def test_an_async_client_stays_on_its_loop(fake: Any) -> None:
    server, _seen, routes = fake

    async def configs(_request: web.Request) -> web.Response:
        return web.json_response({"configs": [{"unique_key": "a", "provider": "b"}]})

    routes["/config"] = configs
    keyway = AsyncClient(host=url(server), secret_key=SECRET)
    assert [i.unique_key for i in await keyway.list_integrations()] == ["a"]

    def elsewhere() -> None:
        asyncio.run(keyway.list_integrations())

    with pytest.raises(RuntimeError, match="event loop of its first call"):
        await asyncio.to_thread(elsewhere)
    await keyway.aclose()


def test_constructors_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="host"):
        AsyncClient(host="127.0.0.1:3003", secret_key=SECRET)
    with pytest.raises(ValueError, match="secret_key"):
        AsyncClient(host="http://127.0.0.1:3003", secret_key="")
    with pytest.raises(TypeError):
        AsyncClient("http://127.0.0.1:3003", SECRET)  # type: ignore[misc]  # keyword-only
    client = Client(host="http://127.0.0.1:3003", secret_key=SECRET)
    assert repr(client) == "Client(host='http://127.0.0.1:3003')"
    client.close()
    client.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        client.list_integrations()

"""``/integrations``: integrations as Nango's current API serves them, beside the 2024 ``/config``.

The shape ``@nangohq/node`` 0.71's integration methods hand back (``{"data": …}``), ``?include=``
``webhook``/``credentials``, creations, edits and deletions seen through the 2024 view of the same
integration (and the other way round), and every refusal in Nango's envelope: zod's issues for a bad
query, path or body, Nango's words for what its service refuses, a 404 for an unknown integration,
never a 500.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .gateway_app import Gateway, StartGateway, create_integration
from .test_bad_bodies import BAD_BODIES

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SHAPE = {"unique_key", "provider", "display_name", "forward_webhooks", "created_at", "updated_at"}
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----"
OAUTH2 = {"type": "OAUTH2", "client_id": "cid", "client_secret": "csecret", "scopes": "repo,user"}


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        yield gateway


async def call(gw: Gateway, method: str, path: str, status: int, body: Any = None) -> Any:
    resp = await gw.client.request(method, path, json=body, headers=gw.auth)
    assert resp.status == status, (method, path, await resp.text())
    assert resp.content_type == "application/json"
    return await resp.json()


async def create(gw: Gateway, body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = (await call(gw, "POST", "/integrations", 200, body))["data"]
    return data


async def legacy(gw: Gateway, key: str) -> dict[str, Any]:
    config: dict[str, Any] = (await call(gw, "GET", f"/config/{key}?include_creds=true", 200))["config"]
    return config


def refusal(body: dict[str, Any], code: str) -> dict[str, Any]:
    """The error object of Nango's envelope (Keyway also sends the code as ``type``, for 2024's SDKs)."""
    assert body["type"] == code, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    return error


def issues(body: dict[str, Any], code: str) -> list[tuple[str, str, list[str]]]:
    return [(i["code"], i["message"], i["path"]) for i in refusal(body, code)["errors"]]


async def test_a_created_integration_in_the_current_and_the_2024_shape(gw: Gateway) -> None:
    body = {"provider": "github", "unique_key": "gh", "display_name": "Our GitHub", "credentials": OAUTH2}
    created = await create(gw, body)
    assert set(created) == SHAPE  # no logo: Keyway hosts none
    assert (created["unique_key"], created["provider"], created["display_name"]) == ("gh", "github", "Our GitHub")
    assert created["forward_webhooks"] is True  # Nango's default
    assert ISO.match(created["created_at"])
    assert ISO.match(created["updated_at"])
    assert await call(gw, "GET", "/integrations/gh", 200) == {"data": created}
    assert await call(gw, "GET", "/integrations", 200) == {"data": [created]}

    config = await legacy(gw, "gh")  # one integration: the 2024 view reads what the current one wrote
    assert (config["client_id"], config["client_secret"], config["scopes"]) == ("cid", "csecret", "repo,user")
    assert (config["auth_mode"], config["created_at"]) == ("OAUTH2", created["created_at"])
    assert (await call(gw, "GET", "/config", 200))["configs"] == [{"unique_key": "gh", "provider": "github"}]


async def test_an_integration_made_through_config_is_listed_with_its_providers_name(gw: Gateway) -> None:
    await create_integration(gw, "posthog", "ph")
    await create_integration(gw, "github", "gh", oauth_client_id="a", oauth_client_secret="b", oauth_scopes="repo")
    listed = (await call(gw, "GET", "/integrations", 200))["data"]
    assert [(i["unique_key"], i["provider"], i["display_name"], i["forward_webhooks"]) for i in listed] == [
        ("gh", "github", "GitHub", True),
        ("ph", "posthog", "PostHog", True),
    ]
    for item in listed:
        assert set(item) == SHAPE
    shown = (await call(gw, "GET", "/integrations/gh?include=credentials", 200))["data"]
    assert shown["credentials"] == {
        "type": "OAUTH2",
        "client_id": "a",
        "client_secret": "b",
        "scopes": "repo",
        "webhook_secret": None,
    }


async def test_include_adds_the_webhook_url_and_the_credentials(gw: Gateway) -> None:
    plain = await create(gw, {"provider": "github", "unique_key": "gh", "credentials": OAUTH2})
    assert plain["display_name"] == "GitHub"  # none given: the provider's
    creds = {**OAUTH2, "webhook_secret": None}
    webhook = (await call(gw, "GET", "/integrations/gh?include=webhook", 200))["data"]
    assert webhook == {**plain, "webhook_url": None}  # Keyway receives no provider webhooks (yet)
    with_creds = (await call(gw, "GET", "/integrations/gh?include=credentials", 200))["data"]
    assert with_creds == {**plain, "credentials": creds}
    both = {**plain, "webhook_url": None, "credentials": creds}
    for query in (
        "include=webhook&include=credentials",
        "include[]=credentials&include[]=webhook",
        "include[0]=webhook&include[1]=credentials",
    ):
        assert (await call(gw, "GET", f"/integrations/gh?{query}", 200))["data"] == both, query


async def test_each_auth_mode_shows_its_own_credentials(gw: Gateway) -> None:
    app = {"type": "APP", "app_id": "123", "app_link": "https://github.com/apps/ours", "private_key": PEM}
    custom = {**app, "type": "CUSTOM", "client_id": "cid", "client_secret": "cs"}
    oauth1 = {"type": "OAUTH1", "client_id": "k", "client_secret": "s", "webhook_secret": "whs"}
    await create(gw, {"provider": "github-app", "unique_key": "app", "credentials": app})
    await create(gw, {"provider": "github-app-oauth", "unique_key": "custom", "credentials": custom})
    await create(gw, {"provider": "trello", "unique_key": "tr", "credentials": oauth1})
    await create(gw, {"provider": "posthog", "unique_key": "ph"})

    async def shown(key: str) -> Any:
        return (await call(gw, "GET", f"/integrations/{key}?include=credentials", 200))["data"]["credentials"]

    assert await shown("app") == {"type": "APP", "app_id": "123", "private_key": PEM, "app_link": app["app_link"]}
    assert await shown("custom") == {
        "type": "CUSTOM",
        "client_id": "cid",
        "client_secret": "cs",
        "app_id": "123",
        "app_link": app["app_link"],
        "private_key": PEM,
    }
    assert await shown("tr") == {**oauth1, "scopes": None}
    assert await shown("ph") is None  # an API key comes with each connection
    # where /config keeps them, so that the 2024 view and the connect flows read the same fields
    app_config, custom_config = await legacy(gw, "app"), await legacy(gw, "custom")
    assert (app_config["client_id"], app_config["client_secret"], app_config["app_link"]) == (
        "123",
        PEM,
        app["app_link"],
    )
    assert (custom_config["client_id"], custom_config["custom"]) == ("cid", {"app_id": "123", "private_key": PEM})
    assert (await legacy(gw, "tr"))["custom"] == {"webhookSecret": "whs"}  # where Nango keeps it


async def test_patch_changes_only_what_it_names(gw: Gateway) -> None:
    created = await create(gw, {"provider": "github", "unique_key": "gh", "credentials": OAUTH2, "custom": {"a": "1"}})
    renamed = await call(gw, "PATCH", "/integrations/gh", 200, {"display_name": "Renamed", "forward_webhooks": False})
    assert renamed["data"]["display_name"] == "Renamed"
    assert renamed["data"]["forward_webhooks"] is False
    assert renamed["data"]["created_at"] == created["created_at"]
    assert renamed["data"]["updated_at"] >= created["updated_at"]
    assert (await call(gw, "GET", "/integrations/gh", 200))["data"] == renamed["data"]
    config = await legacy(gw, "gh")
    assert (config["client_id"], config["client_secret"], config["scopes"]) == ("cid", "csecret", "repo,user")

    new_client = {"type": "OAUTH2", "client_id": "cid2", "client_secret": "cs2", "webhook_secret": "w"}
    await call(gw, "PATCH", "/integrations/gh", 200, {"credentials": new_client, "custom": {"b": "2"}})
    config = await legacy(gw, "gh")
    assert (config["client_id"], config["client_secret"]) == ("cid2", "cs2")
    assert config["scopes"] == "repo,user"  # not named: kept
    assert config["custom"] == {"a": "1", "b": "2", "webhookSecret": "w"}
    cleared = {**new_client, "webhook_secret": ""}
    shown = (await call(gw, "PATCH", "/integrations/gh", 200, {"credentials": cleared}))["data"]
    assert (await legacy(gw, "gh"))["custom"] == {"a": "1", "b": "2"}  # an empty OAuth 2 secret drops it
    assert shown["display_name"] == "Renamed"

    # a 2024 PUT replaces the client and keeps what only the current API sets
    put = {"provider": "github", "provider_config_key": "gh", "oauth_client_id": "x", "oauth_client_secret": "y"}
    await call(gw, "PUT", "/config", 200, put)
    after = (await call(gw, "GET", "/integrations/gh?include=credentials", 200))["data"]
    assert (after["display_name"], after["forward_webhooks"]) == ("Renamed", False)
    assert (after["credentials"]["client_id"], after["credentials"]["client_secret"]) == ("x", "y")


async def test_a_rename_moves_the_integration_and_its_secrets(gw: Gateway) -> None:
    created = await create(gw, {"provider": "github", "unique_key": "gh", "credentials": OAUTH2})
    moved = (await call(gw, "PATCH", "/integrations/gh", 200, {"unique_key": "gh-2"}))["data"]
    assert (moved["unique_key"], moved["created_at"]) == ("gh-2", created["created_at"])
    assert (
        refusal(await call(gw, "GET", "/integrations/gh", 404), "not_found")["message"]
        == 'Integration "gh" does not exist'
    )
    assert (await legacy(gw, "gh-2"))["client_secret"] == "csecret"  # re-encrypted under its new key
    await call(gw, "PATCH", "/integrations/gh-2", 200, {"unique_key": "gh-2"})  # its own key: nothing to move

    await create_integration(gw, "posthog", "ph")
    taken = await call(gw, "PATCH", "/integrations/gh-2", 400, {"unique_key": "ph"})
    assert refusal(taken, "invalid_body")["message"] == "uniqueKey is already used by another integration"
    conn = {"connection_id": "c1", "provider_config_key": "ph", "api_key": "k"}
    await call(gw, "POST", "/connection", 201, conn)
    busy = await call(gw, "PATCH", "/integrations/ph", 400, {"unique_key": "ph-2"})
    assert refusal(busy, "invalid_body")["message"] == "Can't rename an integration with active connections"
    assert [i["unique_key"] for i in (await call(gw, "GET", "/integrations", 200))["data"]] == ["gh-2", "ph"]


async def test_delete_then_the_integration_is_gone_from_both_views(gw: Gateway) -> None:
    await create(gw, {"provider": "posthog", "unique_key": "ph"})
    assert await call(gw, "DELETE", "/integrations/ph", 200) == {"success": True}
    gone = await call(gw, "DELETE", "/integrations/ph", 404)
    assert gone["error"] == {"code": "not_found", "message": "Integration does not exist"}
    assert (await call(gw, "GET", "/config/ph", 400))["error"]["code"] == "unknown_provider_config"
    await create_integration(gw, "posthog", "ph2")  # and one made through /config goes the same way
    assert await call(gw, "DELETE", "/integrations/ph2", 200) == {"success": True}
    assert await call(gw, "GET", "/integrations", 200) == {"data": []}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/integrations/nope", None), ("PATCH", "/integrations/nope", {"display_name": "x"})],
)
async def test_an_unknown_integration_is_nangos_404(gw: Gateway, method: str, path: str, body: Any) -> None:
    answer = await call(gw, method, path, 404, body)
    assert answer["error"] == {"code": "not_found", "message": 'Integration "nope" does not exist'}


def zod(code: str, message: str, *path: str) -> tuple[str, str, list[str]]:
    return (code, message, list(path))


MISSING_STRING = "Invalid input: expected string, received undefined"
KEY_PATTERN = "Invalid string: must match pattern /^[a-zA-Z0-9~:.@ _-]+$/"
BAD_CREATIONS: dict[str, tuple[dict[str, Any], list[tuple[str, str, list[str]]]]] = {
    "empty": ({}, [zod("invalid_type", MISSING_STRING, "provider"), zod("invalid_type", MISSING_STRING, "unique_key")]),
    "unknown fields": (
        {"provider": "github", "unique_key": "g", "provider_config_key": "g", "oauth_client_id": "a"},
        [zod("unrecognized_keys", 'Unrecognized keys: "provider_config_key", "oauth_client_id"')],
    ),
    "bad key and name": (
        {"provider": "git hub", "unique_key": "a/b" + "x" * 255},
        [
            zod("invalid_format", "Invalid string: must match pattern /^[a-zA-Z0-9_-]+$/", "provider"),
            zod("invalid_format", KEY_PATTERN, "unique_key"),
            zod("too_big", "Too big: expected string to have <=255 characters", "unique_key"),
        ],
    ),
    "wrong types": (
        {"provider": 1, "unique_key": "g", "display_name": "", "forward_webhooks": "yes", "custom": {"a": 1}},
        [
            zod("invalid_type", "Invalid input: expected string, received number", "provider"),
            zod("too_small", "Too small: expected string to have >=1 characters", "display_name"),
            zod("invalid_type", "Invalid input: expected boolean, received string", "forward_webhooks"),
            zod("invalid_type", "Invalid input: expected string, received number", "custom", "a"),
        ],
    ),
    "credentials not an object": (
        {"provider": "github", "unique_key": "g", "credentials": None},
        [zod("invalid_type", "invalid credentials object", "credentials")],
    ),
    "credentials of no known type": (
        {"provider": "github", "unique_key": "g", "credentials": {"type": "API_KEY"}},
        [zod("invalid_union", "invalid credentials object", "credentials", "type")],
    ),
    "credentials incomplete": (
        {"provider": "github", "unique_key": "g", "credentials": {"type": "OAUTH2", "client_id": "", "x": 1}},
        [
            zod("too_small", "Too small: expected string to have >=1 characters", "credentials", "client_id"),
            zod("invalid_type", MISSING_STRING, "credentials", "client_secret"),
            zod("unrecognized_keys", 'Unrecognized key: "x"', "credentials"),
        ],
    ),
    "scopes with spaces": (
        {"provider": "github", "unique_key": "g", "credentials": {**OAUTH2, "scopes": "repo, user"}},
        [zod("invalid_union", "Invalid input", "credentials", "scopes")],
    ),
    "a private key that is not PKCS#1": (
        {
            "provider": "github-app",
            "unique_key": "g",
            "credentials": {
                "type": "APP",
                "app_id": "1",
                "app_link": "l",
                "private_key": "-----BEGIN PRIVATE KEY-----",
            },
        },
        [
            zod(
                "invalid_format",
                'Invalid string: must start with "-----BEGIN RSA PRIVATE KEY----"',
                "credentials",
                "private_key",
            ),
            zod(
                "invalid_format",
                'Invalid string: must end with "-----END RSA PRIVATE KEY-----"',
                "credentials",
                "private_key",
            ),
        ],
    ),
    "integration_config values too long": (
        {"provider": "github", "unique_key": "g", "integration_config": {"a": "x" * 8193}},
        [zod("too_big", "Too big: expected string to have <=8192 characters", "integration_config", "a")],
    ),
}


@pytest.mark.parametrize("name", list(BAD_CREATIONS))
async def test_a_bad_creation_lists_zods_issues(gw: Gateway, name: str) -> None:
    body, expected = BAD_CREATIONS[name]
    assert issues(await call(gw, "POST", "/integrations", 400, body), "invalid_body") == expected
    assert await call(gw, "GET", "/integrations", 200) == {"data": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"provider": "github", "unique_key": "g"}, "Missing credentials"),
        ({"provider": "github-app", "unique_key": "g"}, "Missing credentials"),
        (
            {"provider": "github", "unique_key": "g", "credentials": {**OAUTH2, "type": "OAUTH1"}},
            "incompatible credentials auth type and provider auth",
        ),
        (
            {"provider": "posthog", "unique_key": "g", "credentials": OAUTH2},
            "incompatible credentials auth type and provider auth",
        ),
        (
            {"provider": "posthog", "unique_key": "g", "integration_config": {"a": "b"}},
            "This provider does not accept integration configuration",
        ),
        ({"provider": "personio", "unique_key": "g"}, "Missing credentials"),  # Keyway's OAUTH2_CC holds a client
    ],
)
async def test_what_the_service_refuses_is_in_nangos_words(gw: Gateway, body: dict[str, Any], message: str) -> None:
    error = refusal(await call(gw, "POST", "/integrations", 400, body), "invalid_body")
    assert error == {"code": "invalid_body", "message": message}
    assert await call(gw, "GET", "/integrations", 200) == {"data": []}


async def test_an_unknown_provider_or_a_taken_key_is_one_issue(gw: Gateway) -> None:
    unknown = await call(gw, "POST", "/integrations", 400, {"provider": "no-such-provider", "unique_key": "g"})
    assert issues(unknown, "invalid_body") == [zod("invalid_string", "Invalid provider", "provider")]
    await create_integration(gw, "posthog", "ph")
    taken = await call(gw, "POST", "/integrations", 400, {"provider": "posthog", "unique_key": "ph"})
    assert issues(taken, "invalid_body") == [zod("invalid_string", "Unique key already exists", "uniqueKey")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"provider": "github"}, [zod("unrecognized_keys", 'Unrecognized key: "provider"')]),
        ({"unique_key": "a b!"}, [zod("invalid_format", KEY_PATTERN, "unique_key")]),
        (
            {"display_name": None},
            [zod("invalid_type", "Invalid input: expected string, received null", "display_name")],
        ),
        ({"credentials": []}, [zod("invalid_type", "invalid credentials object", "credentials")]),
    ],
)
async def test_a_bad_patch_lists_zods_issues(gw: Gateway, body: dict[str, Any], expected: list[Any]) -> None:
    await create(gw, {"provider": "github", "unique_key": "gh", "credentials": OAUTH2})
    assert issues(await call(gw, "PATCH", "/integrations/gh", 400, body), "invalid_body") == expected


async def test_a_patch_with_credentials_of_another_mode_is_refused(gw: Gateway) -> None:
    await create_integration(gw, "posthog", "ph")
    answer = await call(gw, "PATCH", "/integrations/ph", 400, {"credentials": OAUTH2})
    assert answer["error"] == {
        "code": "invalid_body",
        "message": "incompatible credentials auth type and provider auth",
    }
    await call(gw, "PATCH", "/integrations/ph", 200, {"display_name": "Analytics"})  # an API-key one has a name


@pytest.mark.parametrize(
    ("method", "path", "code", "expected"),
    [
        (
            "GET",
            "/integrations?limit=1",
            "invalid_query_params",
            [zod("unrecognized_keys", 'Unrecognized key: "limit"')],
        ),
        ("POST", "/integrations?x=1", "invalid_query_params", [zod("unrecognized_keys", 'Unrecognized key: "x"')]),
        ("PATCH", "/integrations/gh?x=1", "invalid_query_params", [zod("unrecognized_keys", 'Unrecognized key: "x"')]),
        (
            "DELETE",
            "/integrations/gh?include=webhook",
            "invalid_query_params",
            [zod("unrecognized_keys", 'Unrecognized key: "include"')],
        ),
        (
            "GET",
            "/integrations/gh?include=logo",
            "invalid_query_params",
            [zod("invalid_union", "Invalid input", "include")],
        ),
        (
            "GET",
            "/integrations/gh?include[x]=webhook",
            "invalid_query_params",
            [zod("invalid_union", "Invalid input", "include")],
        ),
        (
            "GET",
            "/integrations/gh?include=credentials&include=x&y=1",
            "invalid_query_params",
            [zod("invalid_union", "Invalid input", "include"), zod("unrecognized_keys", 'Unrecognized key: "y"')],
        ),
        ("GET", "/integrations/a%2Fb", "invalid_uri_params", [zod("invalid_format", KEY_PATTERN, "uniqueKey")]),
        (
            "DELETE",
            "/integrations/" + "a" * 256,
            "invalid_uri_params",
            [zod("too_big", "Too big: expected string to have <=255 characters", "uniqueKey")],
        ),
        ("PATCH", "/integrations/a%21", "invalid_uri_params", [zod("invalid_format", KEY_PATTERN, "uniqueKey")]),
    ],
)
async def test_a_bad_query_or_path_is_a_400_listing_the_problem(
    gw: Gateway, method: str, path: str, code: str, expected: list[Any]
) -> None:
    body = {"POST": {"provider": "posthog", "unique_key": "p"}, "PATCH": {"display_name": "x"}}.get(method)
    assert issues(await call(gw, method, path, 400, body), code) == expected


async def test_odd_input_is_never_a_500(gw: Gateway) -> None:
    await create_integration(gw, "posthog", "ph")
    for name, (raw, code, words) in BAD_BODIES.items():
        for method, path in (("POST", "/integrations"), ("PATCH", "/integrations/ph")):
            resp = await gw.client.request(method, path, data=raw, headers=gw.auth)
            answer = await resp.json()
            assert resp.status == 400, (name, method, answer)
            assert refusal(answer, code)
            assert words in answer["error"]["message"], (name, method, answer)
    odd: list[tuple[str, str, bytes | None]] = [
        ("POST", "/integrations", b"[]"),
        ("POST", "/integrations", b"not json"),
        ("PATCH", "/integrations/ph", b""),
        ("GET", "/integrations/%00", None),
        ("GET", "/integrations/%ED%A0%80", None),
        ("GET", "/integrations/ph?include=%00", None),
        ("DELETE", "/integrations/%C3%A9", None),
    ]
    for method, path, data in odd:
        resp = await gw.client.request(method, path, data=data, headers=gw.auth)
        assert 400 <= resp.status < 500, (method, path, resp.status, await resp.text())
        assert (await resp.json())["error"]["code"] in {
            "invalid_body",
            "invalid_json",
            "invalid_uri_params",
            "invalid_query_params",
            "not_found",
        }


async def mint_session(gw: Gateway, **fields: Any) -> dict[str, str]:
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u1"}, **fields}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['data']['token']}"}


async def listed(gw: Gateway, headers: dict[str, str]) -> list[str]:
    resp = await gw.client.get("/integrations", headers=headers)
    assert resp.status == 200, await resp.text()
    return [item["unique_key"] for item in (await resp.json())["data"]]


async def test_a_connect_session_lists_only_the_integrations_it_allows(gw: Gateway) -> None:
    """Nango's getListIntegrations filters by the session's allowed_integrations when it has them."""
    await create_integration(gw, "posthog", "ph")
    await create_integration(gw, "posthog", "ph2")
    everything = await call(gw, "GET", "/integrations", 200)
    assert sorted(await listed(gw, gw.auth)) == ["ph", "ph2"]
    assert await listed(gw, await mint_session(gw, allowed_integrations=["ph2"])) == ["ph2"]
    unrestricted = await mint_session(gw)
    resp = await gw.client.get("/integrations", headers=unrestricted)
    assert await resp.json() == everything  # the same integrations, in the same shape


async def test_a_session_token_reads_the_list_and_nothing_else(gw: Gateway) -> None:
    session = await mint_session(gw)
    resp = await gw.client.get("/integrations?x=1", headers=session)
    assert issues(await resp.json(), "invalid_query_params") == [zod("unrecognized_keys", 'Unrecognized key: "x"')]
    unknown = await gw.client.get("/integrations", headers={"Authorization": "Bearer nango_connect_session_x"})
    assert unknown.status == 401
    refusal(await unknown.json(), "unknown_connect_session_token")
    body = {"provider": "posthog", "unique_key": "p"}
    for method, path in (("POST", "/integrations"), ("GET", "/integrations/p"), ("POST", "/integrations/quickstart")):
        resp = await gw.client.request(method, path, json=body, headers=session)
        assert resp.status == 401, (method, path)
        refusal(await resp.json(), "invalid_secret_key_format")
    assert await call(gw, "GET", "/integrations", 200) == {"data": []}


NO_SHARED_APP = "No Nango-provided developer app is configured for this provider"


@pytest.mark.parametrize("provider", ["github", "github-app"])
async def test_quickstart_is_refused_as_nango_refuses_a_provider_without_a_shared_app(
    gw: Gateway, provider: str
) -> None:
    """Keyway lends no shared developer app: Nango's answer when it has none configured for the provider."""
    body = {"provider": provider, "unique_key": "qs", "display_name": "Quick", "forward_webhooks": False}
    error = refusal(await call(gw, "POST", "/integrations/quickstart", 400, body), "invalid_body")
    assert error == {"code": "invalid_body", "message": NO_SHARED_APP}
    assert await call(gw, "GET", "/integrations", 200) == {"data": []}  # nothing was created


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, [zod("invalid_type", MISSING_STRING, "provider"), zod("invalid_type", MISSING_STRING, "unique_key")]),
        (
            {"provider": "github", "unique_key": "qs", "credentials": OAUTH2},
            [zod("unrecognized_keys", 'Unrecognized key: "credentials"')],
        ),
        (
            {"provider": "github", "unique_key": "a/b", "forward_webhooks": "yes"},
            [
                zod("invalid_format", KEY_PATTERN, "unique_key"),
                zod("invalid_type", "Invalid input: expected boolean, received string", "forward_webhooks"),
            ],
        ),
        ({"provider": "no-such-provider", "unique_key": "qs"}, [zod("invalid_string", "Invalid provider", "provider")]),
    ],
)
async def test_a_bad_quickstart_lists_zods_issues(gw: Gateway, body: dict[str, Any], expected: list[Any]) -> None:
    assert issues(await call(gw, "POST", "/integrations/quickstart", 400, body), "invalid_body") == expected


async def test_quickstart_refusals_keep_nangos_order(gw: Gateway) -> None:
    no_app = await call(gw, "POST", "/integrations/quickstart", 400, {"provider": "posthog", "unique_key": "qs"})
    message = "Quickstart is only available for providers that require a developer app"
    assert refusal(no_app, "invalid_body") == {"code": "invalid_body", "message": message}
    await create(gw, {"provider": "github", "unique_key": "gh", "credentials": OAUTH2})
    taken = await call(gw, "POST", "/integrations/quickstart", 400, {"provider": "github", "unique_key": "gh"})
    assert issues(taken, "invalid_body") == [zod("invalid_string", "Unique key already exists", "uniqueKey")]
    query = await call(gw, "POST", "/integrations/quickstart?x=1", 400, {"provider": "github", "unique_key": "q"})
    assert issues(query, "invalid_query_params") == [zod("unrecognized_keys", 'Unrecognized key: "x"')]
    for raw in (b"[]", b"not json", b""):
        resp = await gw.client.post("/integrations/quickstart", data=raw, headers=gw.auth)
        assert resp.status == 400, raw

"""``GET /providers`` and ``GET /providers/{provider}``: the catalog as Nango's current API answers it.

What ``@nangohq/node`` 0.71's ``listProviders``/``getProvider`` hand their caller (``{"data": …}``, each
provider its template with its ``name``), the ``search`` filter, and every refusal in Nango's envelope
(``invalid_query_params``/``invalid_uri_params`` with zod's ``errors``, ``not_found``), never a 500; the
2024 ``/provider`` routes beside them keep their shape.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyway_shared.providers.catalog import load_catalog

from .gateway_app import Gateway, StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

CATALOG = load_catalog()


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        yield gateway


async def get(gw: Gateway, path: str, status: int, headers: dict[str, str] | None = None) -> Any:
    resp = await gw.client.get(path, headers=gw.auth if headers is None else headers)
    assert resp.status == status, (path, await resp.text())
    assert resp.content_type == "application/json"
    return await resp.json()


def issues_of(body: dict[str, Any], code: str) -> list[dict[str, Any]]:
    """The ``errors`` of Nango's validation envelope, after checking the envelope itself."""
    assert body["error"]["code"] == code, body
    assert body["type"] == code
    issues = body["error"]["errors"]
    assert issues, body
    for issue in issues:
        assert set(issue) == {"code", "message", "path"}
        assert isinstance(issue["message"], str)
        assert issue["message"]
    return list(issues)


def expected(name: str) -> dict[str, Any]:
    template = dict(CATALOG.raw(name) or {})
    template.pop("alias", None)
    return {**template, "name": name}


async def test_the_list_is_every_template_with_its_name(gw: Gateway) -> None:
    body = await get(gw, "/providers", 200)
    assert set(body) == {"data"}
    assert [item["name"] for item in body["data"]] == CATALOG.names()
    by_name = {item["name"]: item for item in body["data"]}
    assert by_name["github"] == expected("github")
    assert by_name["zendesk"] == expected("zendesk")
    assert "${connectionConfig.subdomain}" in by_name["zendesk"]["authorization_url"]
    assert not any("logo_url" in item for item in body["data"])  # Keyway hosts no logos: no link to nowhere


async def test_an_alias_comes_resolved_without_its_alias_key(gw: Gateway) -> None:
    assert (CATALOG.raw("github-app") or {}).get("alias") == "github"
    listed = {item["name"]: item for item in (await get(gw, "/providers", 200))["data"]}
    one = (await get(gw, "/providers/github-app", 200))["data"]
    assert one == listed["github-app"]
    assert "alias" not in one
    assert (one["auth_mode"], one["proxy"]["base_url"]) == ("APP", "https://api.github.com")  # from github


async def test_search_finds_names_case_aside(gw: Gateway) -> None:
    found = (await get(gw, "/providers?search=GIT", 200))["data"]
    names = [item["name"] for item in found]
    assert names == [name for name in CATALOG.names() if "git" in name]
    assert "digitalocean" in names  # anywhere in the name, not only its start
    assert found[names.index("github")] == expected("github")
    hubspot = (await get(gw, "/providers?search=hub.pot", 200))["data"]  # '.' is any character, as in Nango
    hub_names = [item["name"] for item in hubspot]
    assert hub_names == [name for name in CATALOG.names() if re.search("hub.pot", name)]
    assert {"hubspot", "hubspot-mcp"} <= set(hub_names)  # the MCP server's entry too
    assert await get(gw, "/providers?search=no-provider-is-called-this", 200) == {"data": []}
    spaced = (await get(gw, "/providers?search=git%20", 200))["data"]  # allowed by the pattern, matches nothing
    assert spaced == []


@pytest.mark.parametrize(
    ("query", "issue"),
    [
        ("search=a*", {"code": "invalid_format", "path": ["search"]}),
        ("search=", {"code": "invalid_format", "path": ["search"]}),
        ("search=(a", {"code": "invalid_format", "path": ["search"]}),
        ("search=" + "a" * 256, {"code": "too_big", "path": ["search"]}),
        ("search=a&search=b", {"code": "invalid_type", "path": ["search"]}),
        ("limit=2", {"code": "unrecognized_keys", "path": [], "message": 'Unrecognized key: "limit"'}),
        ("connect_session_token=x", {"code": "unrecognized_keys", "path": []}),
    ],
)
async def test_a_bad_query_is_a_400_listing_the_problem(gw: Gateway, query: str, issue: dict[str, str]) -> None:
    body = await get(gw, f"/providers?{query}", 400)
    [got] = issues_of(body, "invalid_query_params")
    assert got | issue == got


async def test_every_problem_of_the_query_is_listed(gw: Gateway) -> None:
    body = await get(gw, "/providers?search=" + "*" * 256 + "&a=1&b=2", 400)
    issues = issues_of(body, "invalid_query_params")
    assert [(i["code"], i["path"]) for i in issues] == [
        ("invalid_format", ["search"]),
        ("too_big", ["search"]),
        ("unrecognized_keys", []),
    ]
    assert issues[0]["message"] == "Invalid string: must match pattern /^[a-zA-Z0-9~:.@ _-]+$/"
    assert issues[1]["message"] == "Too big: expected string to have <=255 characters"
    assert issues[2]["message"] == 'Unrecognized keys: "a", "b"'


async def test_an_unknown_provider_is_nangos_404(gw: Gateway) -> None:
    body = await get(gw, "/providers/no-such-provider", 404)
    assert body["error"] == {"code": "not_found", "message": "Unknown provider no-such-provider"}


@pytest.mark.parametrize(
    ("path", "code", "issue"),
    [
        ("/providers/git.hub", "invalid_uri_params", {"code": "invalid_format", "path": ["provider"]}),
        ("/providers/git%20hub", "invalid_uri_params", {"code": "invalid_format", "path": ["provider"]}),
        ("/providers/" + "a" * 256, "invalid_uri_params", {"code": "too_big", "path": ["provider"]}),
        ("/providers/github?search=git", "invalid_query_params", {"code": "unrecognized_keys", "path": []}),
    ],
)
async def test_a_bad_name_or_any_query_is_a_400(gw: Gateway, path: str, code: str, issue: dict[str, Any]) -> None:
    [got] = issues_of(await get(gw, path, 400), code)
    assert got | issue == got


@pytest.mark.parametrize(
    "path",
    [
        "/providers/%00",
        "/providers/%C3%A9",
        "/providers/%ED%A0%80",  # a lone surrogate's bytes: not UTF-8
        "/providers/a%2Fb",
        "/providers?search=%00",
        "/providers?search=%ED%A0%80",
        "/providers?search=%5B",
        "/providers?%00=1",
    ],
)
async def test_odd_input_is_never_a_500(gw: Gateway, path: str) -> None:
    resp = await gw.client.get(path, headers=gw.auth)
    assert 400 <= resp.status < 500, (path, resp.status, await resp.text())
    body = await resp.json()
    assert body["error"]["code"] in {"invalid_uri_params", "invalid_query_params", "not_found"}, body


@pytest.mark.parametrize("path", ["/providers", "/providers/github", "/providers/no-such-provider"])
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_auth_header"),
        ({"Authorization": "Bearer not-a-uuid"}, "invalid_secret_key_format"),
        ({"Authorization": f"Bearer {uuid.uuid4()}"}, "unknown_user_account"),
    ],
)
async def test_the_secret_key_is_required(gw: Gateway, path: str, headers: dict[str, str], code: str) -> None:
    body = await get(gw, path + "?bad=1", 401, headers)  # the key is checked before the query
    assert body["error"]["code"] == code


async def test_the_public_key_is_not_a_secret_key(gw: Gateway) -> None:
    body = await get(gw, "/providers", 401, {"Authorization": f"Bearer {gw.public_key}"})
    assert body["error"]["code"] == "unknown_user_account"


async def test_the_2024_routes_keep_their_shape(gw: Gateway) -> None:
    legacy = (await get(gw, "/provider", 200))["providers"]
    current = (await get(gw, "/providers", 200))["data"]
    assert sorted(legacy) == [item["name"] for item in current]
    assert legacy["github-app"]["alias"] == "github"  # the 2024 answer is the catalog entry as it was
    assert (await get(gw, "/provider/github", 200)) == {"provider": CATALOG.raw("github")}


async def mint_session(gw: Gateway) -> str:
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u1"}}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["data"]["token"]
    return token


async def test_a_connect_session_reads_the_catalog_as_the_secret_key_does(gw: Gateway) -> None:
    """Nango's Connect UI lists and reads providers with its session's token (connectSessionOrSecretKeyAuth)."""
    session = {"Authorization": f"Bearer {await mint_session(gw)}"}
    assert await get(gw, "/providers?search=github", 200, session) == await get(gw, "/providers?search=github", 200)
    assert await get(gw, "/providers/github", 200, session) == {"data": expected("github")}
    body = await get(gw, "/providers/no-such-provider", 404, session)
    assert body["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/providers", "/providers/github"])
async def test_an_unknown_session_is_refused_not_tried_as_a_key(gw: Gateway, path: str) -> None:
    body = await get(gw, path, 401, {"Authorization": "Bearer nango_connect_session_unknown"})
    assert body["error"]["code"] == "unknown_connect_session_token"


@pytest.mark.parametrize("provider", ["github", "github-app", "no-such-provider"])
async def test_templates_are_an_empty_list_for_any_provider(gw: Gateway, provider: str) -> None:
    """Nango answers its templates' syncs and actions, [] for a provider without (known or not); Keyway has none."""
    assert await get(gw, f"/providers/{provider}/templates", 200) == {"data": []}


@pytest.mark.parametrize(
    ("path", "code", "issue"),
    [
        (
            "/providers/git%20hub/templates",
            "invalid_uri_params",
            {"code": "invalid_format", "path": ["provider"]},
        ),
        ("/providers/github/templates?x=1", "invalid_query_params", {"code": "unrecognized_keys", "path": []}),
    ],
)
async def test_a_bad_templates_request_is_a_400(gw: Gateway, path: str, code: str, issue: dict[str, Any]) -> None:
    [found] = issues_of(await get(gw, path, 400), code)
    assert {key: found[key] for key in issue} == issue


async def test_templates_take_only_the_secret_key(gw: Gateway) -> None:
    """Nango guards this one with apiAuth alone: a connect session's token is not a key there."""
    session = {"Authorization": f"Bearer {await mint_session(gw)}"}
    body = await get(gw, "/providers/github/templates", 401, session)
    assert body["error"]["code"] == "invalid_secret_key_format"
    body = await get(gw, "/providers/github/templates", 401, {})
    assert body["error"]["code"] == "missing_auth_header"

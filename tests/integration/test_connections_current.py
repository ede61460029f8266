"""The connections of Nango's current API (``/connections…``), what ``@nangohq/node`` 0.71 calls.

Each route's shape (the curated connection: end user, tags, errors, times with ``+00:00``), every
filter of the list alone and together, pages (one beyond the end is empty), PATCH of the end user,
tags and webhook URL override read back (through the connection cache), the metadata routes, delete
with and without revoking at a real RFC 7009 endpoint on 127.0.0.1, and bad input on each route
answered in Nango's envelope, never a 500. The 2024 ``/connection…`` routes keep their shapes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from keyway_shared.store.connection_labels import LISTED_FIELDS, ConnectionListQuery

from ..support.revoking_provider import RevokingProvider
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

OFFSET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
LEGACY_ONE = {
    "id",
    "created_at",
    "updated_at",
    "provider_config_key",
    "provider",
    "connection_id",
    "environment",
    "connection_config",
    "metadata",
    "credentials",
    "credentials_iv",
    "credentials_tag",
    "last_fetched_at",
    "deleted",
    "deleted_at",
}
LEGACY_LISTED = {"id", "connection_id", "provider_config_key", "provider", "created", "metadata"}


@dataclass
class World:
    gw: Gateway
    provider: RevokingProvider
    db: Any


@pytest.fixture
async def world(start_gateway: StartGateway, tmp_path: Path, db: Any) -> AsyncIterator[World]:
    provider = await RevokingProvider().start()
    catalog = {"revocable": provider.template(revocation_url=f"{provider.base}/revoke", authorization_method="header")}
    try:
        async with start_gateway(
            providers_file=providers_yaml(tmp_path, catalog),
            egress_allowlist="127.0.0.0/8",
            provider_timeout_seconds=2.0,
        ) as gw:
            await create_integration(gw, "posthog", "ph")
            await create_integration(gw, "posthog", "ph2")
            await create_integration(gw, "revocable", "revocable", **provider.integration_fields)
            yield World(gw=gw, provider=provider, db=db)
    finally:
        await provider.stop()


async def call(gw: Gateway, method: str, path: str, status: int, **kw: Any) -> Any:
    resp = await gw.client.request(method, path, headers=gw.auth, **kw)
    assert resp.status == status, (method, path, resp.status, await resp.text())
    assert resp.content_type == "application/json"
    return await resp.json()


async def api_key_connection(gw: Gateway, key: str, connection_id: str, api_key: str = "phx_secret") -> None:
    body = {"connection_id": connection_id, "provider_config_key": key, "api_key": api_key}
    await call(gw, "POST", "/connection", 201, json=body)


async def oauth_connection(gw: Gateway, connection_id: str) -> dict[str, str]:
    tokens = {"access_token": f"at-{connection_id}", "refresh_token": f"rt-{connection_id}"}
    body = {"connection_id": connection_id, "provider_config_key": "revocable", "expires_in": 3600, **tokens}
    await call(gw, "POST", "/connection", 201, json=body)
    return tokens


def path_of(connection_id: str, key: str, extra: str = "") -> str:
    return f"/connections/{quote(connection_id, safe='')}?provider_config_key={quote(key)}{extra}"


async def listed(gw: Gateway, query: str = "") -> list[str]:
    body = await call(gw, "GET", f"/connections{query}", 200)
    assert set(body) == {"connections"}
    return [item["connection_id"] for item in body["connections"]]


def issues(body: dict[str, Any], code: str) -> list[dict[str, Any]]:
    assert body["error"]["code"] == code, body
    found = body["error"]["errors"]
    assert found, body
    assert all(set(issue) == {"code", "message", "path"} for issue in found), body
    return list(found)


# -- shapes ------------------------------------------------------------------------------------


async def test_one_connection_in_the_current_shape_and_the_legacy_shape_kept(world: World) -> None:
    gw = world.gw
    await api_key_connection(gw, "ph", "shape-1")
    end_user = {"id": "u-1", "email": "ann@example.com", "display_name": "Ann", "tags": {"Team": "blue"}}
    patch = {"end_user": end_user, "tags": {"Plan": "pro"}, "webhook_url_override": "https://hooks.example.com/in"}
    assert await call(gw, "PATCH", path_of("shape-1", "ph"), 200, json=patch) == {"success": True}

    one = await call(gw, "GET", path_of("shape-1", "ph"), 200)
    assert set(one) == {
        "id",
        "connection_id",
        "provider_config_key",
        "provider",
        "errors",
        "end_user",
        "tags",
        "metadata",
        "connection_config",
        "webhook_url_override",
        "created_at",
        "updated_at",
        "last_fetched_at",
        "credentials",
    }
    assert (one["connection_id"], one["provider_config_key"], one["provider"]) == ("shape-1", "ph", "posthog")
    assert isinstance(one["id"], int)
    assert one["errors"] == []
    assert one["end_user"] == {
        "id": "u-1",
        "display_name": "Ann",
        "email": "ann@example.com",
        "tags": {"Team": "blue"},
        "organization": None,
    }
    # Nango's tags from an end user: its fields, then its own tags (keys lowercased), then the body's.
    assert one["tags"] == {
        "end_user_id": "u-1",
        "end_user_email": "ann@example.com",
        "end_user_display_name": "Ann",
        "team": "blue",
        "plan": "pro",
    }
    assert one["webhook_url_override"] == "https://hooks.example.com/in"
    assert one["metadata"] is None
    assert one["connection_config"] == {}
    assert one["credentials"] == {"type": "API_KEY", "apiKey": "phx_secret"}
    for field in ("created_at", "updated_at", "last_fetched_at"):
        assert OFFSET_TIME.match(one[field]), (field, one[field])

    items = (await call(gw, "GET", "/connections?connectionId=shape-1", 200))["connections"]
    assert items == [
        {
            "id": one["id"],
            "connection_id": "shape-1",
            "provider_config_key": "ph",
            "provider": "posthog",
            "errors": [],
            "end_user": one["end_user"],
            "tags": one["tags"],
            "metadata": None,
            "created": one["created_at"],
        }
    ]
    # The 2024 routes beside them answer as they always did.
    legacy = await call(gw, "GET", "/connection/shape-1?provider_config_key=ph", 200)
    assert set(legacy) == LEGACY_ONE
    assert legacy["created_at"].endswith("Z")
    legacy_items = (await call(gw, "GET", "/connection?connectionId=shape-1", 200))["connections"]
    assert [set(item) for item in legacy_items] == [LEGACY_LISTED]


async def test_refresh_token_only_when_asked_and_refresh_failure_is_an_error(world: World) -> None:
    gw, provider = world.gw, world.provider
    tokens = await oauth_connection(gw, "oa-1")
    one = await call(gw, "GET", path_of("oa-1", "revocable"), 200)
    assert one["credentials"]["access_token"] == tokens["access_token"]
    assert "refresh_token" not in one["credentials"]
    assert "refresh_token" not in one["credentials"]["raw"]
    with_refresh = await call(gw, "GET", path_of("oa-1", "revocable", "&refresh_token=true"), 200)
    assert with_refresh["credentials"]["refresh_token"] == tokens["refresh_token"]
    # the SDK sends every flag, false ones included
    flags = "&force_refresh=false&refresh_token=false&refresh_github_app_jwt_token=false"
    assert (await call(gw, "GET", path_of("oa-1", "revocable", flags), 200))["credentials"] == one["credentials"]
    # A forced refresh the provider refuses: Nango's invalid_credentials, nothing of the token in it.
    provider.token_mode = "error_400"
    failed = await call(gw, "GET", path_of("oa-1", "revocable", "&force_refresh=true"), 400)
    assert failed["error"]["code"] == "invalid_credentials"
    assert tokens["refresh_token"] not in str(failed)
    items = (await call(gw, "GET", "/connections?connectionId=oa-1", 200))["connections"]
    assert items[0]["errors"] == [{"type": "auth", "log_id": None}]


# -- POST /connections ----------------------------------------------------------------------------

Z_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_post_imports_and_overwrites_in_the_current_shape(world: World) -> None:
    gw = world.gw
    body = {
        "provider_config_key": "ph",
        "connection_id": "up-1",
        "credentials": {"type": "API_KEY", "apiKey": "phx_imported"},
        "metadata": {"plan": "pro"},
        "end_user": {"id": "eve", "email": "eve@example.com"},
        "tags": {"Source": "import"},
        "webhook_url_override": "https://hooks.example.com/up",
    }
    made = await call(gw, "POST", "/connections", 201, json=body)
    assert (made["connection_id"], made["provider_config_key"], made["provider"]) == ("up-1", "ph", "posthog")
    assert made["credentials"] == {"type": "API_KEY", "apiKey": "phx_imported"}
    assert made["metadata"] == {"plan": "pro"}
    assert made["end_user"]["id"] == "eve"
    assert made["tags"] == {"end_user_id": "eve", "end_user_email": "eve@example.com", "source": "import"}
    assert made["webhook_url_override"] == "https://hooks.example.com/up"
    for field in ("created_at", "updated_at"):
        assert Z_TIME.match(made[field]), made[field]
    one = await call(gw, "GET", path_of("up-1", "ph"), 200)
    assert {k: v for k, v in one.items() if not k.endswith("_at")} == {
        k: v for k, v in made.items() if not k.endswith("_at")
    }
    # again: an upsert, the same connection with the new credentials
    again = await call(
        gw, "POST", "/connections", 201, json={**body, "credentials": {"type": "API_KEY", "apiKey": "k2"}}
    )
    assert (again["id"], again["created_at"]) == (made["id"], made["created_at"])
    assert (await call(gw, "GET", path_of("up-1", "ph"), 200))["credentials"]["apiKey"] == "k2"
    # no id: one is made
    anonymous = await call(
        gw,
        "POST",
        "/connections",
        201,
        json={"provider_config_key": "ph", "credentials": {"type": "API_KEY", "apiKey": "k"}},
    )
    assert re.fullmatch(r"[0-9a-f-]{36}", anonymous["connection_id"])
    assert (anonymous["end_user"], anonymous["tags"], anonymous["metadata"]) == (None, {}, {})


async def test_post_oauth2_tokens(world: World) -> None:
    gw = world.gw
    credentials = {"type": "OAUTH2", "access_token": "at-up", "refresh_token": "rt-up", "expires_at": 4102444800000}
    made = await call(
        gw,
        "POST",
        "/connections",
        201,
        json={"provider_config_key": "revocable", "connection_id": "up-2", "credentials": credentials},
    )
    assert made["credentials"]["refresh_token"] == "rt-up"  # the answer has them all, as Nango's
    assert made["credentials"]["expires_at"].startswith("2100-01-01T00:00:00")
    one = await call(gw, "GET", path_of("up-2", "revocable"), 200)
    assert one["credentials"]["access_token"] == "at-up"
    assert "refresh_token" not in one["credentials"]
    lasting = {"type": "OAUTH2", "access_token": "at-forever"}
    made = await call(
        gw,
        "POST",
        "/connections",
        201,
        json={"provider_config_key": "revocable", "connection_id": "up-3", "credentials": lasting},
    )
    assert "expires_at" not in made["credentials"]


async def test_post_refusals(world: World) -> None:
    gw = world.gw
    key = {"type": "API_KEY", "apiKey": "k"}
    unknown = await call(gw, "POST", "/connections", 404, json={"provider_config_key": "nope", "credentials": key})
    assert unknown["error"] == {"code": "not_found", "message": "Integration does not exist"}
    mismatch = await call(
        gw, "POST", "/connections", 400, json={"provider_config_key": "revocable", "credentials": key}
    )
    assert mismatch["error"] == {"code": "invalid_body", "message": "Provider OAUTH2 does not support API_KEY auth"}
    for bad in (
        {"provider_config_key": "ph"},
        {"provider_config_key": "ph", "credentials": {"type": "API_KEY"}},
        {"provider_config_key": "ph", "credentials": {"type": "API_KEY", "apiKey": "k", "extra": 1}},
        {"provider_config_key": "ph", "credentials": {"type": "MAGIC"}},
        {"provider_config_key": "ph", "credentials": key, "nope": 1},
        {"provider_config_key": "ph", "credentials": key, "tags": {"1bad": "x"}},
        {"provider_config_key": "ph", "credentials": key, "end_user": {"id": "x", "email": "no"}},
        {"provider_config_key": "ph", "credentials": key, "connection_config": {"oauth_scopes_override": "a,b"}},
        {
            "provider_config_key": "revocable",
            "credentials": {"type": "OAUTH2", "access_token": "a", "expires_at": 1e300},
        },
    ):
        found = await call(gw, "POST", "/connections", 400, json=bad)
        assert found["error"]["code"] == "invalid_body", (bad, found)
    issues(
        await call(gw, "POST", "/connections?x=1", 400, json={"provider_config_key": "ph", "credentials": key}),
        "invalid_query_params",
    )
    assert await listed(gw) == []  # nothing was stored


# -- the list's filters --------------------------------------------------------------------------


async def filtered_world(world: World) -> None:
    """Six connections: two integrations, end users, organizations, tags."""
    gw = world.gw
    specs: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None, str | None]] = [
        (
            "f-1",
            "ph",
            {"id": "alice", "email": "alice@acme.test", "display_name": "Alice Doe"},
            {"tier": "gold"},
            "acme",
        ),
        ("f-2", "ph", {"id": "bob", "display_name": "Bob Roe"}, {"tier": "silver"}, "acme"),
        ("f-3", "ph2", {"id": "alice", "email": "alice@acme.test"}, {"tier": "gold", "region": "eu"}, "acme"),
        ("f-4", "ph2", None, {"region": "eu"}, None),
        ("f-5", "ph", None, None, None),
        ("Carol-Main", "ph2", {"id": "carol", "display_name": "Carol"}, None, "globex"),
    ]
    for connection_id, key, end_user, tags, organization in specs:
        await api_key_connection(gw, key, connection_id)
        body: dict[str, Any] = {}
        if end_user is not None:
            body["end_user"] = end_user
        if tags is not None:
            body["tags"] = tags
        if body:
            await call(gw, "PATCH", path_of(connection_id, key), 200, json=body)
        if organization is not None:  # a connect session's organization (PATCH takes none)
            await world.db["connections"].update_one(
                {"connection_id": connection_id}, {"$set": {"end_user.organization": {"id": organization}}}
            )


async def test_every_filter_alone_and_together(world: World) -> None:
    await filtered_world(world)
    gw = world.gw
    everything = ["Carol-Main", "f-5", "f-4", "f-3", "f-2", "f-1"]  # newest first
    assert await listed(gw) == everything
    cases = {
        "?connectionId=f-2": ["f-2"],
        "?connectionId=F-2": [],
        "?search=CAROL": ["Carol-Main"],  # the id, case aside
        "?search=OE": ["f-2", "f-1"],  # the end user's display name (Alice Doe, Bob Roe)
        "?search=acme.test": ["f-3", "f-1"],  # the end user's email
        "?search=f-": ["f-5", "f-4", "f-3", "f-2", "f-1"],
        "?endUserId=alice": ["f-3", "f-1"],
        "?endUserOrganizationId=acme": ["f-3", "f-2", "f-1"],
        "?integrationId=ph2": ["Carol-Main", "f-4", "f-3"],
        "?integrationId=ph,ph2": everything,
        "?integrationId=ph%2C%20nope": ["f-5", "f-2", "f-1"],
        "?tags[tier]=gold": ["f-3", "f-1"],
        "?tags[TIER]=gold": ["f-3", "f-1"],  # keys lowercased, as Nango stores them
        "?tags[tier]=Gold": [],  # values as given
        "?tags[tier]=gold&tags[region]=eu": ["f-3"],
        "?tags[end_user_id]=alice": ["f-3", "f-1"],  # the end user's derived tags
        "?tags[end_user_display_name]=Carol": ["Carol-Main"],  # what the SDK sends for tags.displayName
        "?endUserId=alice&integrationId=ph": ["f-1"],
        "?endUserOrganizationId=acme&tags[tier]=silver": ["f-2"],
        "?endUserId=alice&search=f-3": ["f-3"],
        "?connectionId=f-1&endUserId=bob": [],
        "?endUserId=nobody": [],
    }
    for query, expected in cases.items():
        assert await listed(gw, query) == expected, query


async def test_pages_and_a_page_beyond_the_end(world: World) -> None:
    await filtered_world(world)
    gw = world.gw
    assert await listed(gw, "?limit=4") == ["Carol-Main", "f-5", "f-4", "f-3"]
    assert await listed(gw, "?limit=4&page=0") == ["Carol-Main", "f-5", "f-4", "f-3"]
    assert await listed(gw, "?limit=4&page=1") == ["f-2", "f-1"]
    assert await listed(gw, "?limit=4&page=2") == []
    assert await listed(gw, "?limit=2&page=1") == ["f-4", "f-3"]
    assert await listed(gw, "?limit=1&page=99999999999999") == []
    assert await listed(gw, "?limit=2000&page=999999999999") == []  # past any environment's end: not asked
    # pages over a filtered list (filters checked after the database's one condition)
    assert await listed(gw, "?integrationId=ph&tags[tier]=gold&limit=1") == ["f-1"]
    assert await listed(gw, "?endUserOrganizationId=acme&limit=2&page=1") == ["f-1"]
    assert await listed(gw, "?search=f-&limit=2&page=1") == ["f-3", "f-2"]
    assert await listed(gw, "?search=f-&limit=2&page=3") == []
    # ties in creation time: the id orders them, so pages never overlap
    await world.db["connections"].update_many({}, {"$set": {"created_at": datetime(2025, 1, 2, tzinfo=UTC)}})
    seen = [c for page in range(6) for c in await listed(gw, f"?limit=1&page={page}")]
    assert sorted(seen) == sorted(await listed(gw))


async def test_each_filter_reads_through_an_index(world: World) -> None:
    """The embedded server answers from an index only one condition beside the environment."""
    await filtered_world(world)
    collection = world.db["connections"]
    env = "dev"
    expected = {
        "connection_id": ConnectionListQuery(connection_id="f-1"),
        "end_user.id": ConnectionListQuery(end_user_id="alice"),
        "tag_index": ConnectionListQuery(tags={"tier": "gold"}),
        "end_user.organization.id": ConnectionListQuery(organization_id="acme"),
        "provider_config_key": ConnectionListQuery(integration_ids=["ph", "ph2"]),
    }
    for field, query in expected.items():
        lead = {"environment": env, **query.conditions()[0]}
        assert field in lead
        explained = await collection.find(lead, LISTED_FIELDS).sort([("created_at", -1), ("id", -1)]).explain()
        plan = explained["queryPlanner"]["winningPlan"]
        while "inputStage" in plan:
            plan = plan["inputStage"]
        assert plan["stage"] == "IXSCAN", (field, explained["queryPlanner"]["winningPlan"])


# -- PATCH ---------------------------------------------------------------------------------------


async def test_patch_round_trips_through_the_cache(world: World) -> None:
    gw = world.gw
    await api_key_connection(gw, "ph", "p-1")
    before = await call(gw, "GET", path_of("p-1", "ph"), 200)  # now in the connection cache
    assert (before["end_user"], before["tags"], before["webhook_url_override"]) == (None, {}, None)

    await call(gw, "PATCH", path_of("p-1", "ph"), 200, json={"tags": {"Env": "prod", "a.b/c-d_e": "x"}})
    one = await call(gw, "GET", path_of("p-1", "ph"), 200)
    assert (one["end_user"], one["tags"]) == (None, {"env": "prod", "a.b/c-d_e": "x"})
    assert await listed(gw, "?tags[a.b/c-d_e]=x") == ["p-1"]

    # tags alone replace the connection's
    await call(gw, "PATCH", path_of("p-1", "ph"), 200, json={"tags": {"env": "staging"}})
    assert (await call(gw, "GET", path_of("p-1", "ph"), 200))["tags"] == {"env": "staging"}
    assert await listed(gw, "?tags[env]=prod") == []
    assert await listed(gw, "?tags[env]=staging") == ["p-1"]

    # an end user alone: the tags become the end user's
    await call(gw, "PATCH", path_of("p-1", "ph"), 200, json={"end_user": {"id": "dora"}})
    one = await call(gw, "GET", path_of("p-1", "ph"), 200)
    assert one["end_user"] == {"id": "dora", "display_name": None, "email": None, "tags": None, "organization": None}
    assert one["tags"] == {"end_user_id": "dora"}
    assert await listed(gw, "?endUserId=dora") == ["p-1"]

    # the webhook URL override, then "" to drop it; the other labels stay
    await call(gw, "PATCH", path_of("p-1", "ph"), 200, json={"webhook_url_override": "https://h.example.com/x"})
    one = await call(gw, "GET", path_of("p-1", "ph"), 200)
    assert (one["webhook_url_override"], one["tags"]) == ("https://h.example.com/x", {"end_user_id": "dora"})
    await call(gw, "PATCH", path_of("p-1", "ph"), 200, json={"webhook_url_override": ""})
    assert (await call(gw, "GET", path_of("p-1", "ph"), 200))["webhook_url_override"] is None
    assert await call(gw, "PATCH", path_of("p-1", "ph"), 200, json={}) == {"success": True}

    # the credentials are untouched; the 2024 route's shape too
    assert (await call(gw, "GET", path_of("p-1", "ph"), 200))["credentials"] == before["credentials"]
    assert set(await call(gw, "GET", "/connection/p-1?provider_config_key=ph", 200)) == LEGACY_ONE


async def test_patch_refusals(world: World) -> None:
    gw = world.gw
    await api_key_connection(gw, "ph", "p-2")
    path = path_of("p-2", "ph")
    for body, where in (
        ({"nope": 1}, []),
        ({"end_user": {"id": "x", "organization": {"id": "o"}}}, ["end_user"]),
        ({"end_user": {"id": ""}}, ["end_user", "id"]),
        ({"end_user": {"id": "x", "email": "not-an-email"}}, ["end_user", "email"]),
        ({"tags": {"1bad": "x"}}, ["tags"]),
        ({"tags": {"k": ""}}, ["tags"]),
        ({"tags": {f"k{i}": "v" for i in range(11)}}, ["tags"]),
        ({"tags": {"K": "a", "k": "b"}}, ["tags"]),
        ({"tags": {"k": 1}}, ["tags", "k"]),
        ({"webhook_url_override": "ftp://x.example.com"}, ["webhook_url_override"]),
        ({"webhook_url_override": 5}, ["webhook_url_override"]),
    ):
        found = issues(await call(gw, "PATCH", path, 400, json=body), "invalid_body")
        assert any(issue["path"][: len(where)] == where for issue in found), (body, found)
    # derived tags plus the body's past ten keys
    many = {f"k{i}": "v" for i in range(9)}
    body = {"end_user": {"id": "x", "email": "x@example.com"}, "tags": many}
    refused = await call(gw, "PATCH", path, 400, json=body)
    assert refused["error"]["code"] == "invalid_body"
    assert (await call(gw, "GET", path, 200))["end_user"] is None  # nothing written
    issues(await call(gw, "PATCH", "/connections/p-2", 400, json={}), "invalid_query_params")
    issues(await call(gw, "PATCH", path + "&x=1", 400, json={}), "invalid_query_params")
    missing = await call(gw, "PATCH", path_of("nope", "ph"), 404, json={"tags": {"a": "b"}})
    assert missing["error"] == {"code": "not_found", "message": "Failed to find connection"}
    unknown = await call(gw, "PATCH", path_of("p-2", "nope"), 400, json={"tags": {"a": "b"}})
    assert unknown["error"]["code"] == "unknown_provider_config"
    resp = await gw.client.patch(path, data=b"{", headers={**gw.auth, "Content-Type": "application/json"})
    assert resp.status == 400


# -- metadata --------------------------------------------------------------------------------------


async def test_metadata_set_update_and_read(world: World) -> None:
    gw = world.gw
    await api_key_connection(gw, "ph", "m-1")
    await api_key_connection(gw, "ph", "m-2")
    body = {"connection_id": "m-1", "provider_config_key": "ph", "metadata": {"a": 1, "b": {"c": 2}}}
    assert await call(gw, "POST", "/connections/metadata", 201, json=body) == body
    assert (await call(gw, "GET", path_of("m-1", "ph"), 200))["metadata"] == {"a": 1, "b": {"c": 2}}
    both = {"connection_id": ["m-1", "m-2"], "provider_config_key": "ph", "metadata": {"b": 3}}
    assert await call(gw, "PATCH", "/connections/metadata", 200, json=both) == both
    assert (await call(gw, "GET", path_of("m-1", "ph"), 200))["metadata"] == {"a": 1, "b": 3}
    assert (await call(gw, "GET", path_of("m-2", "ph"), 200))["metadata"] == {"b": 3}
    replaced = {"connection_id": ["m-1"], "provider_config_key": "ph", "metadata": {"z": True}}
    await call(gw, "POST", "/connections/metadata", 201, json=replaced)
    items = (await call(gw, "GET", "/connections?integrationId=ph", 200))["connections"]
    assert {item["connection_id"]: item["metadata"] for item in items} == {"m-1": {"z": True}, "m-2": {"b": 3}}

    missing = {"connection_id": ["m-1", "nope"], "provider_config_key": "ph", "metadata": {"q": 1}}
    refused = await call(gw, "PATCH", "/connections/metadata", 404, json=missing)
    assert refused["error"]["code"] == "unknown_connection"
    assert "nope" in refused["error"]["message"]
    assert "No actions were taken" in refused["error"]["message"]
    assert (await call(gw, "GET", path_of("m-1", "ph"), 200))["metadata"] == {"z": True}  # nothing written
    for bad in (
        {**body, "extra": 1},
        {"connection_id": "m-1", "provider_config_key": "ph"},
        {"connection_id": "m-1", "provider_config_key": "ph", "metadata": []},
        {"connection_id": "m<1", "provider_config_key": "ph", "metadata": {}},
        {"connection_id": 5, "provider_config_key": "ph", "metadata": {}},
        {"connection_id": "m-1", "provider_config_key": "p/h", "metadata": {}},
    ):
        issues(await call(gw, "POST", "/connections/metadata", 400, json=bad), "invalid_body")
    dollar = {"connection_id": "m-1", "provider_config_key": "ph", "metadata": {"$set": 1}}
    assert (await call(gw, "POST", "/connections/metadata", 400, json=dollar))["error"]["code"] == "invalid_body"
    issues(await call(gw, "POST", "/connections/metadata?x=1", 400, json=body), "invalid_query_params")


# -- delete ----------------------------------------------------------------------------------------


async def test_delete_revokes_only_when_asked_or_set(world: World) -> None:
    gw, provider = world.gw, world.provider
    await oauth_connection(gw, "d-1")
    assert await call(gw, "DELETE", path_of("d-1", "revocable"), 200) == {"success": True}
    assert provider.revocations == []
    await call(gw, "GET", path_of("d-1", "revocable"), 404)

    tokens = await oauth_connection(gw, "d-2")
    deleted = await call(gw, "DELETE", path_of("d-2", "revocable", "&revoke=true"), 200)
    assert deleted["success"] is True
    assert deleted["revocation"]["status"] == "revoked"
    assert [r["token"] for r in provider.revocations] == [tokens["refresh_token"], tokens["access_token"]]

    body = {"provider": "revocable", "provider_config_key": "revocable", "revoke_on_delete": True}
    await call(gw, "PUT", "/config", 200, json={**body, **provider.integration_fields})
    await oauth_connection(gw, "d-3")
    assert (await call(gw, "DELETE", path_of("d-3", "revocable"), 200))["revocation"]["status"] == "revoked"
    await oauth_connection(gw, "d-4")
    assert await call(gw, "DELETE", path_of("d-4", "revocable", "&revoke=false"), 200) == {"success": True}
    assert len(provider.revocations) == 4

    unknown = await call(gw, "DELETE", path_of("d-1", "revocable"), 400)
    assert unknown["error"] == {"code": "unknown_connection"}
    issues(await call(gw, "DELETE", "/connections/d-1", 400), "invalid_query_params")
    issues(await call(gw, "DELETE", path_of("d-1", "revocable", "&revoke=maybe"), 400), "invalid_query_params")
    issues(await call(gw, "DELETE", path_of("d-1", "revocable", "&x=1"), 400), "invalid_query_params")


# -- bad input -------------------------------------------------------------------------------------


async def test_bad_list_queries_are_refused_in_nangos_envelope(world: World) -> None:
    gw = world.gw
    for query, path in (
        ("?nope=1", []),
        ("?limit=0", ["limit"]),
        ("?limit=2001", ["limit"]),
        ("?limit=abc", ["limit"]),
        ("?limit=1.5", ["limit"]),
        ("?limit=Infinity", ["limit"]),
        ("?page=-1", ["page"]),
        ("?page=NaN", ["page"]),
        ("?search=", ["search"]),
        ("?search=" + "x" * 256, ["search"]),
        ("?connectionId=", ["connectionId"]),
        ("?endUserId=" + "u" * 256, ["endUserId"]),
        ("?endUserOrganizationId=", ["endUserOrganizationId"]),
        ("?integrationId=", ["integrationId"]),
        ("?connectionId=a&connectionId=b", ["connectionId"]),
        ("?tags=plain", ["tags"]),
        ("?tags[a][b]=x", ["tags"]),
        ("?tags[1bad]=x", ["tags"]),
        ("?tags[k]=", ["tags"]),
        ("?tags[end_user_email]=nope", ["tags"]),
        ("?tags[k]=a&tags[k]=b", ["tags"]),
    ):
        found = issues(await call(gw, "GET", f"/connections{query}", 400), "invalid_query_params")
        assert any(issue["path"][: len(path)] == path for issue in found), (query, found)


async def test_bad_single_connection_requests(world: World) -> None:
    gw = world.gw
    await api_key_connection(gw, "ph", "b-1")
    found = issues(await call(gw, "GET", "/connections/b-1", 400), "invalid_query_params")
    assert found[0]["path"] == ["provider_config_key"]
    issues(await call(gw, "GET", path_of("b-1", "ph", "&force_refresh=maybe"), 400), "invalid_query_params")
    issues(await call(gw, "GET", path_of("b-1", "ph", "&other=1"), 400), "invalid_query_params")
    issues(await call(gw, "GET", path_of("b-1", "p/h"), 400), "invalid_query_params")
    issues(await call(gw, "GET", path_of("b<1", "ph"), 400), "invalid_uri_params")
    issues(await call(gw, "GET", path_of("b" * 256, "ph"), 400), "invalid_uri_params")
    assert (await call(gw, "GET", path_of("b-1", "nope"), 400))["error"]["code"] == "unknown_provider_config"
    missing = await call(gw, "GET", path_of("nope", "ph"), 404)
    assert missing["error"] == {"code": "not_found", "message": "Failed to find connection"}
    # every flag spelling zod's stringbool takes
    for spelling in ("1", "yes", "ON", "enabled", "0", "off"):
        await call(gw, "GET", path_of("b-1", "ph", f"&refresh_token={spelling}"), 200)
    resp = await gw.client.get("/connections/b-1?provider_config_key=ph", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    resp = await gw.client.get("/connections", headers={"Authorization": f"Bearer {gw.public_key}"})
    assert resp.status == 401

"""Connect sessions in Nango's current shape (issue 17): every field ``POST /connect/sessions`` takes
and refuses, ``connect_link``, ``GET /connect/session``, reconnect sessions, and the end user, tags and
webhook URL override a session gives the connection it writes, down to the auth webhook's body.

Nango's rules come from its server's ``controllers/connect/postSessions.ts``, ``postReconnect.ts``,
``getSession.ts``, ``helpers/validation.ts`` and ``shared/lib/services/tags/schema.ts``; the auth
webhook's body from ``packages/webhooks/lib/auth.ts``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from keyway_shared.cipher import CredentialCipher
from keyway_shared.store import WebhookKeyStore
from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..support.inproc import running
from ..support.polling import eventually
from ..support.receiver import WebhookReceiver, webhook_receiver
from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

END_USER = {"id": "user-7", "email": "ann@example.com", "display_name": "Ann", "tags": {"Plan": "pro"}}
ORGANIZATION = {"id": "org-1", "display_name": "Acme"}
# The connection's tags: the end user's fields, the organization's, the end user's own tags (keys
# lowercased), then the body's own tags (keys lowercased), in that order.
TAGS = {
    "end_user_id": "user-7",
    "end_user_email": "ann@example.com",
    "end_user_display_name": "Ann",
    "organization_id": "org-1",
    "organization_display_name": "Acme",
    "plan": "pro",
    "team": "core",
}


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "posthog", "ph")
        await create_integration(gateway, "freshdesk", "fd")
        yield gateway


async def mint(gw: Gateway, body: dict[str, Any], path: str = "/connect/sessions") -> dict[str, Any]:
    resp = await gw.client.post(path, json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    assert set(data) == {"token", "connect_link", "expires_at"}
    assert data["connect_link"] == f"{gw.settings.public_url.rstrip('/')}/connect-ui/?session_token={data['token']}"
    return data


async def session_of(gw: Gateway, token: str) -> dict[str, Any]:
    resp = await gw.client.get("/connect/session", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def connect_api_key(gw: Gateway, token: str, key: str = "ph", api_key: str = "phx_1") -> str:
    resp = await gw.client.post(f"/api-auth/api-key/{key}?connect_session_token={token}", json={"apiKey": api_key})
    assert resp.status == 200, await resp.text()
    connection_id: str = (await resp.json())["connectionId"]
    return connection_id


async def test_a_full_session_is_minted_and_read_in_nangos_current_shape(gw: Gateway, db: Any) -> None:
    data = await mint(
        gw,
        {
            "end_user": END_USER,
            "organization": ORGANIZATION,
            "tags": {"Team": "core"},
            "allowed_integrations": ["ph", "fd"],
            "integrations_config_defaults": {
                "ph": {
                    "user_scopes": "chat:write",
                    "authorization_params": {"prompt": "consent"},
                    "connection_config": {"oauth_scopes_override": "read", "subdomain": "acme"},
                }
            },
            "overrides": {"fd": {"docs_connect": "https://docs.example.com/fd", "unknown": "dropped"}},
            "webhook_url_override": "https://hooks.example.com/acme",
        },
    )
    stored = await db["connect_sessions"].find_one({})
    assert stored["tags"] == TAGS
    assert list(stored["tags"]) == list(TAGS)
    assert stored["webhook_url_override"] == "https://hooks.example.com/acme"

    session = await session_of(gw, data["token"])
    assert session["endUser"] == {
        "id": "user-7",
        "display_name": "Ann",
        "email": "ann@example.com",
        "tags": {"Plan": "pro"},
        "organization": {"id": "org-1", "display_name": "Acme"},
    }
    assert session["connectUISettings"]["defaultTheme"] == "system"
    assert set(session["connectUISettings"]) == {"theme", "defaultTheme", "showWatermark"}
    assert session["allowed_integrations"] == ["ph", "fd"]
    assert session["integrations_config_defaults"] == {
        "ph": {
            "connection_config": {"oauth_scopes_override": "read", "subdomain": "acme"},
            "authorization_params": {"prompt": "consent"},
        }
    }
    assert session["overrides"] == {"fd": {"docs_connect": "https://docs.example.com/fd"}}
    assert session["websocketsPath"] == "/"
    assert "isReconnecting" not in session
    # Keyway's first fields stay beside Nango's
    assert session["end_user"] == END_USER
    assert session["organization"] == ORGANIZATION
    assert session["expires_at"] == data["expires_at"]


async def test_a_session_with_tags_needs_no_end_user(gw: Gateway, db: Any) -> None:
    data = await mint(gw, {"tags": {"project": "p-1"}, "allowed_integrations": [], "webhook_url_override": ""})
    session = await session_of(gw, data["token"])
    assert session["endUser"] is None
    assert "allowed_integrations" not in session  # an empty list restricts nothing, as in Nango
    connection_id = await connect_api_key(gw, data["token"])
    doc = await db["connections"].find_one({"connection_id": connection_id})
    assert doc["tags"] == {"project": "p-1"}
    assert doc.get("end_user") is None
    assert doc.get("webhook_url_override") is None  # "": none


async def test_the_deprecated_connection_config_webhook_url_becomes_the_override(gw: Gateway, db: Any) -> None:
    defaults = {"ph": {"connection_config": {"webhook_url": "https://old.example.com/h", "subdomain": "x"}}}
    data = await mint(gw, {"end_user": {"id": "u"}, "integrations_config_defaults": defaults})
    stored = await db["connect_sessions"].find_one({})
    assert stored["webhook_url_override"] == "https://old.example.com/h"
    session = await session_of(gw, data["token"])
    assert session["integrations_config_defaults"]["ph"]["connection_config"] == {"subdomain": "x"}
    # given both, the top-level one wins
    await mint(
        gw,
        {
            "end_user": {"id": "u"},
            "integrations_config_defaults": defaults,
            "webhook_url_override": "https://new.example.com/h",
        },
    )
    assert await db["connect_sessions"].count_documents({"webhook_url_override": "https://new.example.com/h"}) == 1


REFUSED: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("unknown field", {"end_user": {"id": "u"}, "nope": 1}, ["nope"]),
    ("no end user, no tags", {"organization": {"id": "o"}}, []),
    ("end user's unknown field", {"end_user": {"id": "u", "name": "x"}}, ["end_user", "name"]),
    ("empty end user id", {"end_user": {"id": ""}}, ["end_user", "id"]),
    ("long end user id", {"end_user": {"id": "u" * 256}}, ["end_user", "id"]),
    ("bad email", {"end_user": {"id": "u", "email": "not-an-email"}}, ["end_user", "email"]),
    ("long display name", {"end_user": {"id": "u", "display_name": "d" * 256}}, ["end_user", "display_name"]),
    ("bad end user tag key", {"end_user": {"id": "u", "tags": {"1x": "v"}}}, ["end_user", "tags"]),
    ("organization's unknown field", {"end_user": {"id": "u"}, "organization": {"id": "o", "x": 1}}, None),
    ("bad tag key", {"end_user": {"id": "u"}, "tags": {"a b": "v"}}, ["tags"]),
    ("empty tag value", {"end_user": {"id": "u"}, "tags": {"a": ""}}, ["tags"]),
    ("eleven tags", {"end_user": {"id": "u"}, "tags": {f"k{i}": "v" for i in range(11)}}, ["tags"]),
    ("tags equal but for case", {"end_user": {"id": "u"}, "tags": {"Team": "a", "team": "b"}}, ["tags"]),
    ("end_user_email tag not an email", {"end_user": {"id": "u"}, "tags": {"end_user_email": "x"}}, ["tags"]),
    ("tag value not a string", {"end_user": {"id": "u"}, "tags": {"a": 1}}, ["tags", "a"]),
    ("bad integration key", {"end_user": {"id": "u"}, "allowed_integrations": ["a/b"]}, None),
    (
        "unknown integration in allowed_integrations",
        {"end_user": {"id": "u"}, "allowed_integrations": ["ph", "nope"]},
        ["allowed_integrations", 1],
    ),
    (
        "unknown integration in integrations_config_defaults",
        {"end_user": {"id": "u"}, "integrations_config_defaults": {"nope": {}}},
        ["integrations_config_defaults", "nope"],
    ),
    (
        "unknown integration in overrides",
        {"end_user": {"id": "u"}, "overrides": {"nope": {}}},
        ["overrides", "nope"],
    ),
    (
        "integration defaults' unknown field",
        {"end_user": {"id": "u"}, "integrations_config_defaults": {"ph": {"scopes": "x"}}},
        ["integrations_config_defaults", "ph", "scopes"],
    ),
    (
        "oauth_scopes_override not a string",
        {
            "end_user": {"id": "u"},
            "integrations_config_defaults": {"ph": {"connection_config": {"oauth_scopes_override": 1}}},
        },
        None,
    ),
    (
        "deprecated webhook_url not a URL",
        {"end_user": {"id": "u"}, "integrations_config_defaults": {"ph": {"connection_config": {"webhook_url": "x"}}}},
        ["integrations_config_defaults", "ph", "connection_config", "webhook_url"],
    ),
    ("webhook_url_override not a URL", {"end_user": {"id": "u"}, "webhook_url_override": "nope"}, None),
    ("webhook_url_override not http", {"end_user": {"id": "u"}, "webhook_url_override": "ftp://x.test/h"}, None),
    ("docs_connect not a URL", {"end_user": {"id": "u"}, "overrides": {"ph": {"docs_connect": "javascript:x"}}}, None),
]


@pytest.mark.parametrize(("case", "body", "path"), REFUSED, ids=[case for case, _, _ in REFUSED])
async def test_refused_bodies(gw: Gateway, db: Any, case: str, body: dict[str, Any], path: list[Any] | None) -> None:
    resp = await gw.client.post("/connect/sessions", json=body, headers=gw.auth)
    assert resp.status == 400, case
    answer = await resp.json()
    assert_envelope(answer, "invalid_body")
    if path is not None:
        assert path in [e["path"] for e in answer["error"]["errors"]], answer
    assert await db["connect_sessions"].count_documents({}) == 0


async def test_a_query_string_is_refused(gw: Gateway) -> None:
    resp = await gw.client.post("/connect/sessions?env=dev", json={"end_user": {"id": "u"}}, headers=gw.auth)
    assert resp.status == 400
    answer = await resp.json()
    assert_envelope(answer, "invalid_query_params")
    assert answer["error"]["errors"][0]["code"] == "unrecognized_keys"


async def test_the_connection_takes_the_sessions_end_user_tags_and_webhook_url(gw: Gateway, db: Any) -> None:
    data = await mint(
        gw,
        {
            "end_user": END_USER,
            "organization": ORGANIZATION,
            "tags": {"Team": "core"},
            "webhook_url_override": "https://hooks.example.com/acme",
        },
    )
    connection_id = await connect_api_key(gw, data["token"])
    doc = await db["connections"].find_one({"connection_id": connection_id})
    assert doc["end_user"] == {**END_USER, "organization": ORGANIZATION}
    assert doc["tags"] == TAGS
    assert sorted(doc["tag_index"]) == sorted(f"{k}={v}" for k, v in TAGS.items())
    assert doc["webhook_url_override"] == "https://hooks.example.com/acme"


async def test_a_reconnect_session_writes_only_its_connection(gw: Gateway, db: Any) -> None:
    first = await mint(gw, {"end_user": END_USER, "organization": ORGANIZATION, "tags": {"Team": "core"}})
    connection_id = await connect_api_key(gw, first["token"], api_key="phx_old")

    again = await mint(gw, {"connection_id": connection_id, "integration_id": "ph"}, path="/connect/sessions/reconnect")
    session = await session_of(gw, again["token"])
    assert session["isReconnecting"] is True
    assert session["allowed_integrations"] == ["ph"]
    assert session["endUser"]["id"] == "user-7"  # the connection's end user goes on owning it
    assert session["endUser"]["organization"] == {"id": "org-1", "display_name": "Acme"}

    # only the integration of that connection; the browser cannot name another connection
    resp = await gw.client.post(
        f"/api-auth/basic/fd?connect_session_token={again['token']}", json={"username": "u", "password": "p"}
    )
    assert resp.status == 403
    assert_envelope(await resp.json(), "integration_not_allowed")
    resp = await gw.client.post(
        f"/api-auth/api-key/ph?connect_session_token={again['token']}&connection_id=other", json={"apiKey": "k"}
    )
    assert_envelope(await resp.json(), "invalid_query_params")

    assert await connect_api_key(gw, again["token"], api_key="phx_new") == connection_id
    assert await db["connections"].count_documents({}) == 1
    resp = await gw.client.get(f"/connection/{connection_id}?provider_config_key=ph", headers=gw.auth)
    assert (await resp.json())["credentials"]["apiKey"] == "phx_new"
    doc = await db["connections"].find_one({"connection_id": connection_id})
    assert doc["tags"] == TAGS  # none given: the connection keeps its own
    assert doc["end_user"]["id"] == "user-7"

    # tags and a webhook URL given to a reconnect replace the connection's
    third = await mint(
        gw,
        {
            "connection_id": connection_id,
            "integration_id": "ph",
            "tags": {"stage": "2"},
            "webhook_url_override": "https://hooks.example.com/2",
        },
        path="/connect/sessions/reconnect",
    )
    await connect_api_key(gw, third["token"], api_key="phx_third")
    doc = await db["connections"].find_one({"connection_id": connection_id})
    assert doc["tags"] == {"stage": "2"}
    assert doc["webhook_url_override"] == "https://hooks.example.com/2"
    assert doc["end_user"]["id"] == "user-7"


async def test_refused_reconnects(gw: Gateway, db: Any) -> None:
    first = await mint(gw, {"end_user": {"id": "user-7"}})
    connection_id = await connect_api_key(gw, first["token"])
    before = await db["connect_sessions"].count_documents({})

    async def refused(body: dict[str, Any], code: str = "invalid_body") -> dict[str, Any]:
        resp = await gw.client.post("/connect/sessions/reconnect", json=body, headers=gw.auth)
        assert resp.status == 400, await resp.text()
        answer: dict[str, Any] = await resp.json()
        assert_envelope(answer, code)
        return answer

    unknown = await refused({"connection_id": "nobody", "integration_id": "ph"})
    assert unknown["error"]["message"] == "ConnectionID or IntegrationId does not exists"
    await refused({"connection_id": connection_id, "integration_id": "fd"})  # not that integration's
    await refused({"connection_id": connection_id})
    await refused({"connection_id": connection_id, "integration_id": "ph", "allowed_integrations": ["ph"]})
    other = await refused({"connection_id": connection_id, "integration_id": "ph", "end_user": {"id": "someone"}})
    assert other["error"]["errors"][0]["path"] == ["end_user", "id"]
    await refused({"connection_id": "a\nb", "integration_id": "ph"})
    assert await db["connect_sessions"].count_documents({}) == before
    resp = await gw.client.post("/connect/sessions/reconnect", json={"connection_id": connection_id})
    assert resp.status == 401


async def test_auth_webhooks_carry_the_end_user_and_tags_and_go_to_the_override(
    start_gateway: StartGateway, service_settings: dict[str, Any], encryption_key: str, db: Any
) -> None:
    dispatcher = DispatcherSettings(**service_settings, encryption_key=encryption_key, egress_allowlist="127.0.0.0/8")
    async with (
        webhook_receiver() as primary,
        webhook_receiver() as secondary,
        webhook_receiver() as override,
        start_gateway() as gw,
        running(create_dispatcher(dispatcher)),
    ):
        await create_integration(gw, "posthog", "ph")
        settings = {"primary_url": primary.url, "secondary_url": secondary.url}
        resp = await gw.client.patch("/environment", json={"webhook_settings": settings}, headers=gw.auth)
        assert resp.status == 200, await resp.text()

        session = await mint(gw, {"end_user": END_USER, "organization": ORGANIZATION, "tags": {"Team": "core"}})
        owned = await connect_api_key(gw, session["token"])
        [hook] = await eventually(lambda: _hooks(primary, 1), what="the webhook of the session's connection")
        tags = json.dumps(TAGS, separators=(",", ":"))
        assert hook.body.decode() == (
            '{"from":"nango","type":"auth",'
            f'"connectionId":"{owned}","providerConfigKey":"ph","authMode":"API_KEY","provider":"posthog",'
            f'"environment":"dev","operation":"creation","tags":{tags},'
            '"endUser":{"endUserId":"user-7","endUserEmail":"ann@example.com","organizationId":"org-1",'
            '"tags":{"Plan":"pro"}},"success":true}'
        )
        [key] = await WebhookKeyStore(db, CredentialCipher(current_key=encryption_key)).signing_keys("dev")
        lowered = {k.lower(): v for k, v in hook.headers.items()}
        assert Webhook(key).verify(hook.body, lowered)["endUser"]["endUserId"] == "user-7"  # raises when invalid
        await eventually(lambda: _hooks(secondary, 1), what="the secondary URL's copy")

        # a session's webhook_url_override: the connection's webhooks go there only, not to the environment's
        redirected = await mint(gw, {"end_user": {"id": "user-8"}, "webhook_url_override": override.url_for("/mine")})
        mine = await connect_api_key(gw, redirected["token"])
        [hook] = await eventually(lambda: _hooks(override, 1), what="the webhook at the override")
        body = json.loads(hook.body)
        assert (body["connectionId"], hook.path) == (mine, "/mine")
        assert body["endUser"] == {"endUserId": "user-8", "endUserEmail": None, "tags": {}}
        assert body["tags"] == {"end_user_id": "user-8"}

        # a connection made with the public key says nothing of an end user, as in 2024
        resp = await gw.client.post(
            f"/api-auth/api-key/ph?public_key={gw.public_key}&connection_id=plain", json={"apiKey": "k"}
        )
        assert resp.status == 200, await resp.text()
        hooks = await eventually(lambda: _hooks(primary, 2), what="the public-key connection's webhook")
        plain = json.loads(hooks[1].body)
        assert plain["connectionId"] == "plain"
        assert "tags" not in plain
        assert "endUser" not in plain
        assert [json.loads(h.body)["connectionId"] for h in primary.received] == [owned, "plain"]
        assert len(secondary.received) == 2


async def _hooks(receiver: WebhookReceiver, count: int) -> list[Any] | None:
    return list(receiver.received) if len(receiver.received) >= count else None

"""AWS_SIGV4 end to end against a fake AWS on 127.0.0.1 (tests/support/fake_aws.py), which recomputes
every SigV4 signature independently and refuses what AWS refuses.

``POST /auth/aws-sigv4/{key}`` as @nangohq/frontend 0.71.10 posts it (``{role_arn, region}``, Nango's
``postAwsSigV4.ts``): STS AssumeRole signed with the integration's key and the connection's external
id, GetCallerIdentity with the new key, the connection stored encrypted; a forced refresh assumes the
role again with the same external id; the proxy signs every attempt with the current key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from webhook_dispatcher.app import create_app as create_dispatcher
from webhook_dispatcher.settings import DispatcherSettings

from ..support.fake_aws import FakeAws
from ..support.inproc import running
from ..support.polling import eventually
from ..support.receiver import webhook_receiver
from .flow_helpers import EventWatch, get_connection
from .gateway_app import Gateway, StartGateway, providers_yaml
from .proxy_setup import call
from .refresher_world import StartRefresherWorld
from .test_gateway_api import assert_envelope
from .test_tba_connect import events

__all__ = ["events"]  # the bus watch fixture, shared with the TBA tests

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

ROLE = "arn:aws:iam::123456789012:role/KeywayAccess"


@pytest.fixture
async def aws() -> AsyncIterator[FakeAws]:
    async with FakeAws(role_arn=ROLE) as fake:
        yield fake


@pytest.fixture
async def gw(start_gateway: StartGateway, aws: FakeAws, tmp_path: Path) -> AsyncIterator[Gateway]:
    providers = providers_yaml(tmp_path, {"aws-fake": aws.template()})
    async with start_gateway(providers_file=providers, egress_allowlist="127.0.0.0/8") as gateway:
        yield gateway


async def create(gw: Gateway, aws: FakeAws, key: str = "aws", **settings: str) -> None:
    """``POST /integrations`` with Nango's integration_config (kept in the integration's custom)."""
    config = {"service": aws.service, "awsAccessKeyId": aws.owner_key_id, "awsSecretAccessKey": aws.owner_secret}
    body = {"provider": "aws-fake", "unique_key": key, "integration_config": config | settings}
    resp = await gw.client.post("/integrations", json=body, headers=gw.auth)
    assert resp.status == 200, await resp.text()


async def connect(gw: Gateway, body: dict[str, Any], query: str = "", key: str = "aws") -> aiohttp.ClientResponse:
    return await gw.client.post(f"/auth/aws-sigv4/{key}?public_key={gw.public_key}{query}", json=body)


async def test_connect_stores_the_roles_key_and_the_proxy_signs_every_attempt(
    gw: Gateway, aws: FakeAws, db: Any
) -> None:
    await create(gw, aws)
    resp = await connect(gw, {"role_arn": ROLE, "region": "eu-west-1"}, "&connection_id=acme")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"connectionId": "acme", "providerConfigKey": "aws"}

    # STS was asked as AWS expects (the fake checked the owner's signature), then the key was checked.
    [assumed] = aws.assume_calls
    assert (assumed["Action"], assumed["RoleArn"], assumed["Version"]) == ("AssumeRole", ROLE, "2011-06-15")
    external_id = assumed["ExternalId"]
    assert str(uuid.UUID(external_id)) == external_id
    assert aws.identity_calls == 1
    assert aws.rejected == []

    connection = await get_connection(gw, "acme", "aws")
    credentials = connection["credentials"]
    assert list(credentials) == [
        "type", "raw", "role_arn", "region", "service", "access_key_id", "secret_access_key", "session_token",
        "expires_at", "external_id",
    ]  # fmt: skip
    assert (credentials["type"], credentials["role_arn"], credentials["region"]) == ("AWS_SIGV4", ROLE, "eu-west-1")
    assert (credentials["service"], credentials["external_id"]) == ("execute-api", external_id)
    issued = aws.issued[credentials["access_key_id"]]
    assert (credentials["secret_access_key"], credentials["session_token"]) == (issued.secret, issued.token)
    assert connection["connection_config"] == {
        "external_id": external_id,
        "role_arn": ROLE,
        "region": "eu-west-1",
        "service": "execute-api",
    }
    stored = await db["connections"].find_one({"connection_id": "acme"})
    assert stored["auth_mode"] == "AWS_SIGV4"
    assert issued.secret not in json.dumps(stored, default=str)
    assert aws.owner_secret not in json.dumps(stored, default=str)

    # The proxy: a 503 first, so two attempts, each signed over the caller's x-amz-target and body.
    aws.service_failures = 1
    resp = await call(
        gw,
        "POST",
        "/items/a%20b?z=1&a=2",
        "acme",
        "aws",
        headers={"Retries": "2", "Content-Type": "application/x-amz-json-1.1", "Nango-Proxy-X-Amz-Target": "Svc.List"},
        data=b'{"Limit": 5}',
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"ok": True, "path": "items/a b", "key": credentials["access_key_id"]}
    assert aws.service_calls[0]["path"] == "/svc/execute-api/eu-west-1/items/a%20b"
    assert aws.rejected == []
    assert len(aws.service_calls) == 2
    assert all(c["target"] == "Svc.List" and c["body"] == b'{"Limit": 5}' for c in aws.service_calls)
    assert "x-amz-target" in aws.service_calls[0]["authorization"]

    # The fake is no stub: the same path without a signature is refused.
    async with aiohttp.ClientSession() as http, http.get(f"{aws.base}/svc/execute-api/eu-west-1/items") as direct:
        assert direct.status == 403


async def test_a_forced_refresh_assumes_the_role_again_with_the_same_external_id(gw: Gateway, aws: FakeAws) -> None:
    await create(gw, aws, defaultRegion="us-east-2")
    # The integration's default region; the credentials' own type may come along (the dashboard's script).
    resp = await connect(gw, {"type": "AWS_SIGV4", "role_arn": ROLE}, "&connection_id=r1")
    assert resp.status == 200, await resp.text()
    first = (await get_connection(gw, "r1", "aws"))["credentials"]
    assert first["region"] == "us-east-2"

    resp = await gw.client.get("/connection/r1?provider_config_key=aws&force_refresh=true", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    renewed = (await resp.json())["credentials"]
    assert renewed["access_key_id"] != first["access_key_id"]
    assert [c["ExternalId"] for c in aws.assume_calls] == [first["external_id"]] * 2
    assert renewed["external_id"] == first["external_id"]

    resp = await call(gw, "GET", "/ping", "r1", "aws")
    assert resp.status == 200, await resp.text()
    assert aws.service_calls[-1]["key"] == renewed["access_key_id"]

    # A reconnect keeps the region the connection signs in, whatever the body says.
    resp = await connect(gw, {"role_arn": ROLE, "region": "ap-south-1"}, "&connection_id=r1")
    assert resp.status == 200, await resp.text()
    again = (await get_connection(gw, "r1", "aws"))["credentials"]
    assert (again["region"], again["external_id"]) == ("us-east-2", first["external_id"])


async def test_a_missing_region_is_refused_before_anything_is_sent_or_stored(
    gw: Gateway, aws: FakeAws, db: Any, events: EventWatch
) -> None:
    await create(gw, aws)  # no defaultRegion
    resp = await connect(gw, {"role_arn": ROLE}, "&connection_id=nowhere")
    assert resp.status == 400
    body = await resp.json()
    assert_envelope(body, "missing_aws_sigv4_region")
    assert aws.assume_calls == []
    assert await db["connections"].find_one({"connection_id": "nowhere"}) is None
    failed = await events.wait_for("auth.failed", "nowhere")
    assert (failed["error"]["type"], failed["auth_mode"]) == ("missing_aws_sigv4_region", "AWS_SIGV4")
    assert not events.announced_connection("nowhere")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, ["role_arn"]),
        ({"role_arn": ""}, ["role_arn"]),
        ({"role_arn": ROLE, "region": "eu-west-1.evil.com#"}, ["region"]),
        ({"role_arn": ROLE, "region": "eu-west-1", "access_key": "x"}, []),
        ({"type": "BILL", "role_arn": ROLE}, []),
    ],
)
async def test_a_body_nangos_schema_refuses_is_invalid_body(
    gw: Gateway, aws: FakeAws, db: Any, body: dict[str, Any], path: list[str]
) -> None:
    await create(gw, aws, defaultRegion="us-east-1")
    resp = await connect(gw, body, "&connection_id=bad")
    assert resp.status == 400
    answer = await resp.json()
    assert answer["error"]["code"] == "invalid_body"
    assert [issue["path"] for issue in answer["error"]["errors"]] == [path]
    assert aws.assume_calls == []
    assert await db["connections"].find_one({"connection_id": "bad"}) is None


async def test_sts_refusals_are_the_modes_errors_and_store_nothing(gw: Gateway, aws: FakeAws, db: Any) -> None:
    await create(gw, aws, defaultRegion="us-east-1")
    aws.assume_mode = "deny"
    resp = await connect(gw, {"role_arn": ROLE}, "&connection_id=denied")
    assert resp.status == 400
    answer = await resp.json()
    assert_envelope(answer, "aws_sigv4_sts_request_failed")
    assert aws.owner_secret not in json.dumps(answer)

    aws.assume_mode = "ok"
    resp = await connect(gw, {"role_arn": ROLE.replace("KeywayAccess", "Other")}, "&connection_id=denied")
    assert resp.status == 400
    assert_envelope(await resp.json(), "aws_sigv4_sts_request_failed")

    # An integration whose own key is wrong: STS refuses the signature.
    await create(gw, aws, key="aws-wrong-key", defaultRegion="us-east-1", awsSecretAccessKey="not-the-secret")
    resp = await connect(gw, {"role_arn": ROLE}, "&connection_id=denied", key="aws-wrong-key")
    assert resp.status == 400
    assert_envelope(await resp.json(), "aws_sigv4_sts_request_failed")
    assert any("signature does not match" in reason for reason in aws.rejected)

    # An integration without its AWS settings.
    resp = await gw.client.post(
        "/integrations", json={"provider": "aws-fake", "unique_key": "aws-bare"}, headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    resp = await connect(gw, {"role_arn": ROLE, "region": "us-east-1"}, "&connection_id=denied", key="aws-bare")
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_aws_sigv4_service")
    assert await db["connections"].find_one({"connection_id": "denied"}) is None


async def test_integration_config_takes_only_the_declared_settings(gw: Gateway, aws: FakeAws) -> None:
    for config in ({"unknown": "x"}, {"service": "S3!"}, {"service": "s3", "stsMode": "other"}):
        body = {"provider": "aws-fake", "unique_key": "cfg", "integration_config": config}
        resp = await gw.client.post("/integrations", json=body, headers=gw.auth)
        assert resp.status == 400, config
        assert (await resp.json())["error"]["code"] == "invalid_body"


async def test_the_refresher_mints_a_new_key_before_the_old_one_expires(
    start_refresher_world: StartRefresherWorld,
) -> None:
    """Keys living 4 seconds: the token-refresher assumes the role again halfway through, and the proxy
    signs with the new key once the old one is refused."""
    async with (
        FakeAws(role_arn=ROLE, lifetime=timedelta(seconds=4)) as aws,
        start_refresher_world(templates={"aws-fake": aws.template()}) as world,
    ):
        gw = world.gw
        config = {"service": aws.service, "awsAccessKeyId": aws.owner_key_id, "awsSecretAccessKey": aws.owner_secret}
        resp = await gw.client.patch(
            "/integrations/aws-fake",
            json={"integration_config": config | {"defaultRegion": "us-east-1"}},
            headers=gw.auth,
        )
        assert resp.status == 200, await resp.text()
        resp = await connect(gw, {"role_arn": ROLE}, "&connection_id=kept", key="aws-fake")
        assert resp.status == 200, await resp.text()
        first = (await get_connection(gw, "kept", "aws-fake"))["credentials"]["access_key_id"]

        await eventually(lambda: _assumed(aws, 2), what="the refresher to assume the role again", timeout=15)
        doc = await world.doc("kept")
        assert doc["auth_mode"] == "AWS_SIGV4"
        await eventually(lambda: _expired(aws, first), what="the first key to expire", timeout=10)
        resp = await call(gw, "GET", "/after", "kept", "aws-fake")
        assert resp.status == 200, await resp.text()
        assert aws.service_calls[-1]["key"] != first
        assert {c["ExternalId"] for c in aws.assume_calls} == {aws.assume_calls[0]["ExternalId"]}


async def _assumed(aws: FakeAws, times: int) -> bool:
    return len(aws.assume_calls) >= times


async def _expired(aws: FakeAws, key: str) -> bool:
    return aws.issued[key].expires <= datetime.now(UTC)


async def test_the_connect_ui_lists_the_form_and_a_connect_session_sends_the_auth_webhook(
    start_gateway: StartGateway, service_settings: dict[str, Any], encryption_key: str, db: Any, tmp_path: Path
) -> None:
    dispatcher = DispatcherSettings(**service_settings, encryption_key=encryption_key, egress_allowlist="127.0.0.0/8")
    async with (
        FakeAws(role_arn=ROLE) as aws,
        webhook_receiver() as receiver,
        start_gateway(
            providers_file=providers_yaml(tmp_path, {"aws-fake": aws.template()}), egress_allowlist="127.0.0.0/8"
        ) as gw,
        running(create_dispatcher(dispatcher)),
    ):
        await create(gw, aws, defaultRegion="us-west-2")
        resp = await gw.client.patch(
            "/environment", json={"webhook_settings": {"primary_url": receiver.url}}, headers=gw.auth
        )
        assert resp.status == 200, await resp.text()
        body = {"end_user": {"id": "user-aws"}, "allowed_integrations": ["aws"]}
        resp = await gw.client.post("/connect/sessions", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()
        token = (await resp.json())["data"]["token"]

        # What the Connect UI shows: the role to type, the optional region, and where to post them.
        resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, await resp.text()
        [entry] = (await resp.json())["data"]
        assert (entry["flow"], entry["form_path"]) == ("form", "auth/aws-sigv4/{providerConfigKey}")
        assert [field["name"] for field in entry["fields"]] == ["role_arn"]
        assert [(param["name"], param["optional"]) for param in entry["params"]] == [("region", True)]

        resp = await gw.client.post(f"/auth/aws-sigv4/aws?connect_session_token={token}", json={"role_arn": ROLE})
        assert resp.status == 200, await resp.text()
        connection_id = (await resp.json())["connectionId"]
        stored = await db["connections"].find_one({"connection_id": connection_id})
        assert stored["end_user"]["id"] == "user-aws"
        assert stored["connection_config"]["region"] == "us-west-2"

        async def delivered() -> list[Any] | None:
            return list(receiver.received) or None

        [hook] = await eventually(delivered, what="the AWS connection's auth webhook")
        sent = json.loads(hook.body)
        assert (sent["type"], sent["operation"], sent["success"]) == ("auth", "creation", True)
        assert (sent["connectionId"], sent["authMode"], sent["provider"]) == (connection_id, "AWS_SIGV4", "aws-fake")
        assert aws.owner_secret not in str(hook.body)
        assert str(aws.issued[next(iter(aws.issued))].secret) not in str(hook.body)


async def test_an_imported_key_signs_proxy_calls_and_is_renewed_from_its_role(gw: Gateway, aws: FakeAws) -> None:
    """``POST /connection`` with Nango's AWS_SIGV4 credentials fields (a Nango export): stored, used by
    the proxy, and renewed with the role and external id it names."""
    await create(gw, aws)
    access, issued = aws.issue()
    external_id = str(uuid.uuid4())
    body = {
        "connection_id": "moved",
        "provider_config_key": "aws",
        "role_arn": ROLE,
        "access_key_id": access,
        "secret_access_key": issued.secret,
        "session_token": issued.token,
        "expires_at": issued.expires.isoformat(),
        "connection_config": {"region": "eu-north-1", "service": aws.service, "external_id": external_id},
    }
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    credentials = (await get_connection(gw, "moved", "aws"))["credentials"]
    assert (credentials["type"], credentials["region"], credentials["external_id"]) == (
        "AWS_SIGV4", "eu-north-1", external_id,
    )  # fmt: skip
    resp = await call(gw, "GET", "/moved", "moved", "aws")
    assert resp.status == 200, await resp.text()
    assert aws.service_calls[-1]["key"] == access

    resp = await gw.client.get("/connection/moved?provider_config_key=aws&force_refresh=true", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    assert [(c["RoleArn"], c["ExternalId"]) for c in aws.assume_calls] == [(ROLE, external_id)]

    # Without a region anywhere the import is refused with the mode's code, and nothing is stored.
    del body["connection_config"]
    resp = await gw.client.post("/connection", json=body | {"connection_id": "moved-2"}, headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_aws_sigv4_region")

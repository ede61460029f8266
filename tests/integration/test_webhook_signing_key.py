"""The environment's webhook signing key: what ``X-Nango-Hmac-Sha256`` is keyed by, as Nango signs it today.

Proves: a new environment gets its own key (a UUID v4, not the secret key), stored encrypted and bound
to its environment and field; an environment stored before the key existed signs with a copy of its
secret key (Nango's backfill), which stays put when the secret key rotates; ``POST
/environment/webhook-signing-key/rotate`` answers as Nango does and refuses what Nango refuses; and a
rotation reaches the webhook dispatcher through the environment-changed broadcast, so that the retry
of a webhook first sent before it is signed with the new key (and ``X-Nango-Signature`` stays on the
secret key, the Standard Webhooks headers as they were).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import aio_pika
import pytest
from standardwebhooks.webhooks import Webhook

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher, DecryptionError
from keyway_shared.events import ConnectionCreated
from keyway_shared.store import Database, EnvironmentStore, WebhookKeyStore
from keyway_shared.store.environments import environment_secret_ad
from keyway_shared.webhook_signing import verify_nango_hmac, verify_nango_signature
from webhook_dispatcher.app import create_app as create_dispatcher

from ..support.inproc import event
from ..support.polling import eventually
from ..support.scripted_receiver import scripted_receiver
from ..support.webhooks import count_at_least, dispatcher_settings, running_dispatcher
from .gateway_app import StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

ROTATE = "/environment/webhook-signing-key/rotate"
FIELD = "webhook_signing_key_enc"
CONN = {"connection_id": "c-1", "provider_config_key": "posthog-x", "provider": "posthog", "auth_mode": "API_KEY"}


@pytest.fixture
def cipher(encryption_key: str) -> CredentialCipher:
    return CredentialCipher(current_key=encryption_key)


def is_uuid4(text: str) -> bool:
    try:
        return uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text
    except ValueError:
        return False


async def test_a_new_environment_gets_its_own_key_encrypted_and_bound(db: Database, cipher: CredentialCipher) -> None:
    store = EnvironmentStore(db, cipher)
    dev = await store.ensure("dev")
    prod = await store.ensure("prod")
    assert is_uuid4(dev.webhook_signing_key)
    assert dev.webhook_signing_key not in {dev.secret_key, prod.webhook_signing_key}
    assert await store.get("dev") == dev  # the round trip gives back the same key

    doc = await db["environments"].find_one({"_id": "dev"})
    assert doc is not None
    assert dev.webhook_signing_key not in str(doc)  # only its ciphertext is stored
    token = doc[FIELD]
    assert (
        cipher.decrypt(token, associated_data=environment_secret_ad("dev", FIELD)).decode() == dev.webhook_signing_key
    )
    for wrong in (environment_secret_ad("prod", FIELD), environment_secret_ad("dev", "secret_key_enc")):
        with pytest.raises(DecryptionError):
            cipher.decrypt(token, associated_data=wrong)
    await db["environments"].update_one({"_id": "prod"}, {"$set": {FIELD: token}})  # dev's key planted in prod
    with pytest.raises(DecryptionError):
        await store.get("prod")


async def test_an_environment_from_before_signs_with_its_secret_key_until_rotated(
    db: Database, cipher: CredentialCipher
) -> None:
    store = EnvironmentStore(db, cipher)
    await store.ensure("dev")
    await db["environments"].update_one({"_id": "dev"}, {"$unset": {FIELD: ""}})  # as a gateway before the key
    before = await store.get("dev")
    assert before is not None
    assert before.webhook_signing_key == before.secret_key  # what Nango's backfill gave such environments

    assert await store.bind_legacy_secrets() == 0  # bound already: only its signing key is written
    doc = await db["environments"].find_one({"_id": "dev"})
    assert doc is not None
    assert cipher.decrypt(doc[FIELD], associated_data=environment_secret_ad("dev", FIELD)).decode() == before.secret_key
    assert await store.get("dev") == before

    # Rotating the secret key leaves the signing key where receivers have it.
    new_secret = await store.start_rotation("dev", "secret")
    assert await store.activate_rotation("dev", "secret")
    after = await store.get("dev")
    assert after is not None
    assert (after.secret_key, after.webhook_signing_key) == (new_secret, before.secret_key)

    rotated = await store.rotate_webhook_signing_key("dev")
    assert rotated is not None
    assert is_uuid4(rotated)
    assert rotated not in {before.secret_key, new_secret}
    now = await store.get("dev")
    assert now is not None
    assert (now.webhook_signing_key, now.secret_key) == (rotated, new_secret)
    assert await store.rotate_webhook_signing_key("nowhere") is None


async def test_a_write_to_an_environment_from_before_keeps_its_signing_key(
    db: Database, cipher: CredentialCipher
) -> None:
    """Any write (here a pinned secret key changed by settings) first writes the copy it signed with."""
    store = EnvironmentStore(db, cipher)
    old = await store.ensure("dev")
    await db["environments"].update_one({"_id": "dev"}, {"$unset": {FIELD: ""}})
    changed = await store.ensure("dev", secret_key=str(uuid.uuid4()))
    assert changed.secret_key != old.secret_key
    assert changed.webhook_signing_key == old.secret_key


async def test_the_rotate_route_answers_as_nango(start_gateway: StartGateway) -> None:
    async with start_gateway() as gw:
        resp = await gw.client.get("/environment", headers=gw.auth)
        before = (await resp.json())["environment"]["webhook_signing_key"]
        assert is_uuid4(before)
        assert before != gw.secret_key

        resp = await gw.client.post(ROTATE, headers=gw.auth)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert list(body) == ["data"]
        assert list(body["data"]) == ["webhook_signing_key"]
        rotated = body["data"]["webhook_signing_key"]
        assert is_uuid4(rotated)
        assert rotated != before
        resp = await gw.client.get("/environment", headers=gw.auth)  # the secret key still works, unchanged
        assert (await resp.json())["environment"]["webhook_signing_key"] == rotated

        resp = await gw.client.post(ROTATE, json={"anything": True}, headers=gw.auth)  # Nango reads no body
        assert resp.status == 200
        latest = (await resp.json())["data"]["webhook_signing_key"]
        assert latest != rotated

        resp = await gw.client.post(ROTATE + "?env=dev&x=1", headers=gw.auth)
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_query_params"
        assert error["errors"] == [
            {"code": "unrecognized_keys", "message": 'Unrecognized keys: "env", "x"', "path": []}
        ]

        resp = await gw.client.post(ROTATE, data="x", headers=gw.auth | {"Content-Type": "text/plain"})
        assert resp.status == 415
        assert (await resp.json())["error"]["code"] == "invalid_content_type"

        resp = await gw.client.post(ROTATE, headers={"Authorization": f"Bearer {uuid.uuid4()}"})
        assert resp.status == 401
        resp = await gw.client.post(ROTATE)
        assert resp.status == 401

        # Nothing refused changed the key.
        resp = await gw.client.get("/environment", headers=gw.auth)
        assert (await resp.json())["environment"]["webhook_signing_key"] == latest


async def test_a_retry_after_a_rotation_is_signed_with_the_new_key(
    start_gateway: StartGateway,
    db: Database,
    cipher: CredentialCipher,
    mongo_url: str,
    db_name: str,
    amqp_url: str,
    namespace: str,
    encryption_key: str,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    """The dispatcher caches the environment for an hour here: only the gateway's broadcast can tell it."""
    settings = dispatcher_settings(
        mongo_url=mongo_url,
        db_name=db_name,
        amqp_url=amqp_url,
        namespace=namespace,
        encryption_key=encryption_key,
        cache_seconds=3600.0,
        retry_schedule=(3.0,),
    )
    publisher = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    async with scripted_receiver(500, status=200) as rec, start_gateway() as gw:
        resp = await gw.client.patch(
            "/environment", json={"webhook_settings": {"primary_url": rec.url}}, headers=gw.auth
        )
        assert resp.status == 200
        old = (await resp.json())["environment"]["webhook_signing_key"]
        async with running_dispatcher(create_dispatcher(settings)):
            await publisher.publish(event("connection.created", ConnectionCreated(**CONN)))
            await eventually(lambda: count_at_least(rec.arrivals, 1), what="the first attempt")
            resp = await gw.client.post(ROTATE, headers=gw.auth)
            assert resp.status == 200
            new = (await resp.json())["data"]["webhook_signing_key"]
            await eventually(lambda: count_at_least(rec.arrivals, 2), what="the retry")
        await publisher.close()
    first, retry = (arrival.request for arrival in rec.arrivals[:2])
    assert first.body == retry.body
    assert verify_nango_hmac(old, first.body, first.headers["X-Nango-Hmac-Sha256"])
    assert not verify_nango_hmac(new, first.body, first.headers["X-Nango-Hmac-Sha256"])
    assert verify_nango_hmac(new, retry.body, retry.headers["X-Nango-Hmac-Sha256"])
    assert not verify_nango_hmac(old, retry.body, retry.headers["X-Nango-Hmac-Sha256"])
    assert retry.headers["X-Nango-Hmac-Sha256"] == hmac.new(new.encode(), retry.body, hashlib.sha256).hexdigest()
    [whsec] = await WebhookKeyStore(db, cipher).signing_keys("dev")
    for hook in (first, retry):
        assert verify_nango_signature(gw.secret_key, hook.body, hook.headers["X-Nango-Signature"])  # unchanged
        lowered: dict[str, Any] = {k.lower(): v for k, v in hook.headers.items()}
        assert Webhook(whsec).verify(hook.body, lowered)["connectionId"] == "c-1"  # Standard Webhooks as before
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]

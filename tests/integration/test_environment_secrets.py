"""Environment secrets (secret key, pending secret key, HMAC key) are bound to their environment and
field as associated data, and documents stored under the old constant are carried over unchanged."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from keyway_shared.cipher import CredentialCipher, DecryptionError
from keyway_shared.events import utcnow
from keyway_shared.store import Database, EnvironmentStore, hash_secret_key
from keyway_shared.store.environments import LEGACY_SECRET_AD, SECRET_FIELDS, environment_secret_ad

from .gateway_app import StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

OLD_PENDING = "5f0e2b7c-8a1d-4c3e-b2a9-7d6c5b4a3f2e"


@pytest.fixture
def cipher(encryption_key: str) -> CredentialCipher:
    return CredentialCipher(current_key=encryption_key)


def old_secret(name: str) -> str:
    fixed = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    return fixed[:14] + "4" + fixed[15:]  # shaped as a UUID v4, as secret keys are


async def store_legacy(db: Database, cipher: CredentialCipher, name: str, *, pending: str | None = None) -> None:
    """An environment as a gateway before the binding stored it: every ciphertext under one constant."""

    def enc(value: str) -> str:
        return cipher.encrypt(value.encode(), associated_data=LEGACY_SECRET_AD)

    now = utcnow()
    rotation = (
        {"pending_secret_key_hash": hash_secret_key(pending), "pending_secret_key_enc": enc(pending)} if pending else {}
    )
    await db["environments"].insert_one(
        rotation
        | {
            "_id": name,
            "public_key": str(uuid.uuid4()),
            "secret_key_hash": hash_secret_key(old_secret(name)),
            "secret_key_enc": enc(old_secret(name)),
            "callback_url": None,
            "hmac_enabled": True,
            "hmac_key_enc": enc("old-hmac-key"),
            "webhooks": {},
            "created_at": now,
            "updated_at": now,
        }
    )


async def test_a_secret_copied_to_another_environment_or_field_does_not_decrypt(
    db: Database, cipher: CredentialCipher
) -> None:
    store = EnvironmentStore(db, cipher)
    await store.ensure("dev")
    await store.ensure("prod")
    await store.update_settings("dev", hmac_key="dev-hmac")
    dev = await db["environments"].find_one({"_id": "dev"})
    assert dev is not None
    for field_name in ("secret_key_enc", "hmac_key_enc"):
        token = dev[field_name]
        assert cipher.decrypt(token, associated_data=environment_secret_ad("dev", field_name))
        for wrong in (LEGACY_SECRET_AD, environment_secret_ad("prod", field_name)):
            with pytest.raises(DecryptionError):
                cipher.decrypt(token, associated_data=wrong)
    # dev's secret key planted in prod's HMAC key, and in prod's secret key: neither reads.
    for field_name in ("hmac_key_enc", "secret_key_enc"):
        await db["environments"].update_one({"_id": "prod"}, {"$set": {field_name: dev["secret_key_enc"]}})
        with pytest.raises(DecryptionError):
            await store.get("prod")


async def test_legacy_documents_are_read_then_bound_unchanged(db: Database, cipher: CredentialCipher) -> None:
    await store_legacy(db, cipher, "dev", pending=OLD_PENDING)
    await store_legacy(db, cipher, "prod")
    store = EnvironmentStore(db, cipher)
    before = await store.get("dev")
    assert before is not None
    assert (before.secret_key, before.pending_secret_key, before.hmac_key) == (
        old_secret("dev"),
        OLD_PENDING,
        "old-hmac-key",
    )
    assert before.public_key_connect == "hmac"  # stored before the setting: HMAC on reads as hmac

    # A write to a legacy document binds all of it first, so it never mixes the two.
    await store.update_settings("prod", hmac_key="new-hmac-key")
    prod = await db["environments"].find_one({"_id": "prod"})
    assert prod is not None
    assert prod["secrets_ad"] == 2
    for field_name in ("secret_key_enc", "hmac_key_enc"):
        with pytest.raises(DecryptionError):
            cipher.decrypt(prod[field_name], associated_data=LEGACY_SECRET_AD)
    after = await store.get("prod")
    assert after is not None
    assert (after.secret_key, after.pending_secret_key, after.hmac_key) == (old_secret("prod"), None, "new-hmac-key")

    assert await store.bind_legacy_secrets() == 1  # dev; prod already was
    assert await store.bind_legacy_secrets() == 0
    dev = await db["environments"].find_one({"_id": "dev"})
    assert dev is not None
    for field_name in SECRET_FIELDS:
        assert cipher.decrypt(dev[field_name], associated_data=environment_secret_ad("dev", field_name))
    assert await store.get("dev") == before
    assert await store.by_secret_key(OLD_PENDING) == before  # the rotation under way goes on
    assert await store.activate_rotation("dev", "secret")
    activated = await store.get("dev")
    assert activated is not None
    assert activated.secret_key == OLD_PENDING  # re-encrypted for the field it moved to


async def test_the_gateway_binds_legacy_environments_at_start(
    db: Database, cipher: CredentialCipher, start_gateway: StartGateway
) -> None:
    await store_legacy(db, cipher, "prod")  # the tests' gateway pins dev's keys, not prod's
    await store_legacy(db, cipher, "imported")  # not one of the gateway's own: bound too
    async with start_gateway() as gw:
        resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {old_secret('prod')}"})
        assert resp.status == 200, await resp.text()
        environment: dict[str, Any] = (await resp.json())["environment"]
        assert environment["name"] == "prod"
        assert (environment["hmac_key"], environment["public_key_connect"]) == ("old-hmac-key", "hmac")
    for name in ("prod", "imported"):
        doc = await db["environments"].find_one({"_id": name})
        assert doc is not None
        assert doc["secrets_ad"] == 2
        assert cipher.decrypt(doc["secret_key_enc"], associated_data=environment_secret_ad(name, "secret_key_enc"))

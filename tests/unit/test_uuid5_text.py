"""The dispatcher's cheaper uuid5 gives the ids ``uuid.uuid5`` gives (delivery ids, notice ids)."""

from __future__ import annotations

import uuid

from keyway_shared.store.webhook_deliveries import delivery_id, uuid5_text


def test_uuid5_text_is_uuid5() -> None:
    for namespace in (uuid.NAMESPACE_URL, uuid.UUID("5b0c8f3e-7a1d-4e0b-9a65-0d3c1f6e2a47")):
        for name in ("", "a|primary", "ünïcode|override", "x" * 500):
            assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))


def test_delivery_id_unchanged() -> None:
    namespace = uuid.UUID("5b0c8f3e-7a1d-4e0b-9a65-0d3c1f6e2a47")
    assert delivery_id("evt-1", "primary") == str(uuid.uuid5(namespace, "evt-1|primary"))

"""The checked-in JSON Schemas and AsyncAPI document match the event models, and describe the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyway_shared.events import EVENT_MODELS, ConnectionCreated, EventData, encode_event, make_event
from keyway_shared.events import schemas as gen

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_files_match_the_models() -> None:
    drifted = gen.drifted_files(ROOT)
    assert drifted == [], f"generated files drifted from the models: {drifted}; run `make schemas`"
    assert sorted(p.name for p in (ROOT / gen.SCHEMA_DIR).glob("*.json")) == sorted(f"{t}.json" for t in EVENT_MODELS)


def test_drift_is_detected_and_repaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["check", "--root", str(tmp_path)]) == 1  # nothing written yet: everything is missing
    assert len(gen.drifted_files(tmp_path)) == len(EVENT_MODELS) + 1
    assert gen.main(["write", "--root", str(tmp_path)]) == 0
    assert gen.drifted_files(tmp_path) == []
    assert gen.main(["check", "--root", str(tmp_path)]) == 0

    edited = tmp_path / gen.SCHEMA_DIR / "connection.created.json"
    edited.write_text(edited.read_text().replace('"connection_id"', '"connectionId"'))
    stale = tmp_path / gen.SCHEMA_DIR / "connection.renamed.json"
    stale.write_text("{}")
    (tmp_path / gen.ASYNCAPI_PATH).write_text("asyncapi: 3.0.0\n")
    capsys.readouterr()
    assert gen.main(["check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for path in ("docs/schemas/connection.created.json", "docs/schemas/connection.renamed.json", "docs/asyncapi.yaml"):
        assert f"drifted: {path}" in err
    assert "drifted: docs/schemas/auth.failed.json" not in err

    assert gen.main(["write", "--root", str(tmp_path)]) == 0
    assert not stale.exists()
    assert gen.drifted_files(tmp_path) == []


class _AddedLater(EventData):
    """An event type added to the models after the files were generated."""

    thing_id: str


def test_a_model_change_is_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen.write_files(tmp_path)
    monkeypatch.setitem(EVENT_MODELS, "thing.added", _AddedLater)
    drifted = gen.drifted_files(tmp_path)
    assert Path("docs/schemas/thing.added.json") in drifted
    assert gen.ASYNCAPI_PATH in drifted


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / gen.ASYNCAPI_PATH).read_text(encoding="utf-8"))
    return document


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict)
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_asyncapi_describes_the_exchange(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"]
    assert asyncapi["info"]["version"]
    assert asyncapi["defaultContentType"] == "application/cloudevents+json"
    assert set(asyncapi["channels"]) == set(EVENT_MODELS)
    for event_type, channel in asyncapi["channels"].items():
        assert channel["address"] == event_type  # the routing key
        amqp = channel["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"] == {
            "name": "keyway.events",
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        }


def test_asyncapi_messages_carry_the_payload_schemas(asyncapi: dict[str, Any]) -> None:
    for event_type, model in EVENT_MODELS.items():
        channel = asyncapi["channels"][event_type]
        (message_ref,) = (m["$ref"] for m in channel["messages"].values())
        message = _resolve(asyncapi, message_ref)
        assert message["name"] == event_type
        assert message["contentType"] == "application/cloudevents+json"
        payload = _resolve(asyncapi, message["payload"]["$ref"])
        assert payload["properties"]["type"]["const"] == event_type
        assert payload["properties"]["specversion"]["const"] == "1.0"
        assert {"id", "source", "type", "time", "environment", "data"} <= set(payload["required"])
        data = _resolve(asyncapi, payload["properties"]["data"]["$ref"])
        assert data["title"] == model.__name__
        assert set(data["properties"]) == set(model.model_fields)
        # The embedded schema is the same as the standalone file, up to where the nested models live.
        standalone = json.loads((ROOT / gen.SCHEMA_DIR / f"{event_type}.json").read_text(encoding="utf-8"))
        assert standalone["properties"].keys() == payload["properties"].keys()
        assert standalone["$defs"][model.__name__]["properties"].keys() == data["properties"].keys()


def test_asyncapi_operations_receive_every_channel(asyncapi: dict[str, Any]) -> None:
    received = set()
    for operation in asyncapi["operations"].values():
        assert operation["action"] == "receive"
        channel = _resolve(asyncapi, operation["channel"]["$ref"])
        for message in operation["messages"]:
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            _resolve(asyncapi, message["$ref"])
        received.add(channel["address"])
    assert received == set(EVENT_MODELS)


def test_every_reference_resolves(asyncapi: dict[str, Any]) -> None:
    refs = _refs(asyncapi)
    assert len(refs) > 4 * len(EVENT_MODELS)
    for ref in refs:
        _resolve(asyncapi, ref)
    for event_type in EVENT_MODELS:
        schema = json.loads((ROOT / gen.SCHEMA_DIR / f"{event_type}.json").read_text(encoding="utf-8"))
        for ref in _refs(schema):
            _resolve(schema, ref)


def test_an_encoded_event_fits_its_schema() -> None:
    schema = gen.event_schema("connection.created")
    data = ConnectionCreated(connection_id="c", provider_config_key="p", provider="github", auth_mode="OAUTH2")
    wire = json.loads(encode_event(make_event(data, type="connection.created", source="/s", environment="dev")))
    assert set(schema["required"]) <= set(wire) <= set(schema["properties"])
    data_schema = schema["$defs"]["ConnectionCreated"]
    assert set(data_schema["required"]) <= set(wire["data"]) <= set(data_schema["properties"])
    assert wire["type"] == schema["properties"]["type"]["const"]

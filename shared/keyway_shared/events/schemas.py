"""The event stream's public contract, generated from the models: one JSON Schema per event type's
full envelope (``docs/schemas/<type>.json``) and an AsyncAPI 3.0 document (``docs/asyncapi.yaml``).

    python -m keyway_shared.events.schemas write [--root DIR]   regenerate the files under DIR/docs
    python -m keyway_shared.events.schemas check [--root DIR]   exit 1, listing files that drifted
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import DEFAULT_REF_TEMPLATE

from .envelope import CloudEvent
from .models import EVENT_MODELS

__all__ = [
    "ASYNCAPI_PATH",
    "SCHEMA_DIR",
    "asyncapi_document",
    "drifted_files",
    "event_schema",
    "main",
    "render_files",
    "write_files",
]

SCHEMA_DIR = Path("docs/schemas")
ASYNCAPI_PATH = Path("docs/asyncapi.yaml")
EXCHANGE = "keyway.events"
CONTENT_TYPE = "application/cloudevents+json"
_AMQP_BINDING_VERSION = "0.3.0"
_GENERATED = "Generated from keyway_shared.events.models by `make schemas`; do not edit by hand."

_ASYNCAPI_DESCRIPTION = f"""\
Every Keyway event is a CloudEvents 1.0 JSON envelope (content type `{CONTENT_TYPE}`) published as
a persistent message, with publisher confirms, to the durable topic exchange `{EXCHANGE}`. The
routing key is the event type, so a subscriber declares its own durable queue and binds it with
the keys it wants: `connection.*`, `token.refresh_failed`, or `#` for everything.

Delivery is at least once: the same event (same `id`) may arrive twice, so a subscriber skips
ids it has already handled. Events carry no secrets; read credentials from the API.
The `environment` extension attribute names the environment (`dev`, `prod`) an event belongs to.
"""

_HEADERS_NAME = "AmqpHeaders"
_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "AMQP headers: the envelope's attributes again, so a message can be routed without parsing it.",
    "properties": {
        "ce_id": {"type": "string", "description": "the event id"},
        "ce_type": {"type": "string", "description": "the event type"},
        "ce_source": {"type": "string", "description": "the producing service"},
        "environment": {"type": "string", "description": "the environment name"},
        "auth_mode": {
            "type": "string",
            "description": "the auth mode of the connection the event is about, when the event says "
            "(connection.* and token.* events): a queue may be bound on it through a headers exchange",
        },
        "x-keyway-attempt": {"type": "integer", "description": "set on Keyway's own retries; absent means 1"},
    },
}


def _envelope_schema(event_type: str, ref_template: str) -> dict[str, Any]:
    model = EVENT_MODELS[event_type]
    schema: dict[str, Any] = CloudEvent[model].model_json_schema(ref_template=ref_template)  # type: ignore[valid-type]
    schema["title"] = f"{event_type} event"
    schema["description"] = " ".join((model.__doc__ or f"The {event_type} event.").split())
    # The envelope model accepts any type string; each document pins its own.
    schema["properties"]["type"]["const"] = event_type
    # What a subscriber may rely on is what a publisher always sends: every attribute but the optional
    # subject (left out when empty), defaults included, although the model would fill those in itself.
    schema["required"] = [name for name in schema["properties"] if name != "subject"]
    return schema


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the whole envelope of one event type, payload included."""
    schema = _envelope_schema(event_type, DEFAULT_REF_TEMPLATE)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$comment": _GENERATED, **schema}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 description of the ``keyway.events`` exchange, one channel per event type."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type in EVENT_MODELS:
        # Nested models go to components/schemas, shared across types, so every $ref resolves in this file.
        schema = _envelope_schema(event_type, "#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different models are both named {name}")
        schemas[event_type] = schema
        messages[event_type] = {
            "name": event_type,
            "title": event_type,
            "summary": schema["description"],
            "contentType": CONTENT_TYPE,
            "headers": {"$ref": f"#/components/schemas/{_HEADERS_NAME}"},
            "payload": {"$ref": f"#/components/schemas/{event_type}"},
            "bindings": {"amqp": {"messageType": event_type, "bindingVersion": _AMQP_BINDING_VERSION}},
        }
        channels[event_type] = {
            "address": event_type,
            "title": event_type,
            "description": f"Messages on `{EXCHANGE}` with the routing key `{event_type}`.",
            "messages": {event_type: {"$ref": f"#/components/messages/{event_type}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": EXCHANGE,
                        "type": "topic",
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": _AMQP_BINDING_VERSION,
                }
            },
        }
        operations[f"receive.{event_type}"] = {
            "action": "receive",
            "title": f"Receive {event_type}",
            "summary": f"A subscriber's queue, bound to `{EXCHANGE}` with `{event_type}` (or a wildcard), receives it.",
            "channel": {"$ref": f"#/channels/{event_type}"},
            "messages": [{"$ref": f"#/channels/{event_type}/messages/{event_type}"}],
            "bindings": {"amqp": {"ack": True, "bindingVersion": _AMQP_BINDING_VERSION}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Keyway event stream",
            "version": "1.0.0",
            "description": _ASYNCAPI_DESCRIPTION,
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "RabbitMQ on a developer's machine (AMQP_URL)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {**schemas, _HEADERS_NAME: copy.deepcopy(_HEADERS_SCHEMA)}},
    }


class _Dumper(yaml.SafeDumper):
    """Safe YAML, with multi-line strings as readable ``|`` blocks instead of quoted one-liners."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _represent_str)


def render_files() -> dict[Path, str]:
    """Every generated file, by its path relative to the repository root, with its exact text."""
    files: dict[Path, str] = {}
    for event_type in EVENT_MODELS:
        text = json.dumps(event_schema(event_type), indent=2, ensure_ascii=False) + "\n"
        files[SCHEMA_DIR / f"{event_type}.json"] = text
    document = yaml.dump(asyncapi_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    files[ASYNCAPI_PATH] = f"# {_GENERATED}\n{document}"
    return files


def drifted_files(root: Path) -> list[Path]:
    """Generated files missing or different under ``root``, and schema files no event type has any more."""
    expected = render_files()
    drifted = [
        path
        for path, text in expected.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]
    if (root / SCHEMA_DIR).is_dir():
        stale = (p.relative_to(root) for p in (root / SCHEMA_DIR).glob("*.json"))
        drifted.extend(p for p in stale if p not in expected)
    return sorted(drifted)


def write_files(root: Path) -> list[Path]:
    """Bring the files under ``root`` up to date; returns those that changed (stale schemas removed)."""
    changed = drifted_files(root)
    expected = render_files()
    for path in changed:
        target = root / path
        if path in expected:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected[path], encoding="utf-8")
        else:
            target.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keyway_shared.events.schemas", description=__doc__)
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: here)")
    args = parser.parse_args(argv)
    root: Path = args.root
    if args.command == "write":
        changed = write_files(root)
        for path in changed:
            print(f"wrote {path}")
        print(f"{len(changed)} file(s) changed" if changed else "schemas up to date")
        return 0
    drifted = drifted_files(root)
    for path in drifted:
        print(f"drifted: {path}", file=sys.stderr)
    if drifted:
        print("run `make schemas` and commit the result", file=sys.stderr)
        return 1
    print("schemas up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

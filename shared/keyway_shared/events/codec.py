"""Bytes ⇄ typed events. Decoding validates both the envelope and the payload of its type."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .envelope import CloudEvent, EventData
from .models import EVENT_MODELS

__all__ = ["EventDecodeError", "decode_event", "encode_event", "make_event"]


class EventDecodeError(ValueError):
    """The bytes are not a valid Keyway event: bad JSON, bad envelope, unknown type or bad data."""


def make_event(
    data: EventData,
    *,
    type: str,
    source: str,
    environment: str,
    subject: str | None = None,
    id: str | None = None,
) -> CloudEvent[EventData]:
    expected = EVENT_MODELS.get(type)
    if expected is None:
        raise ValueError(f"unknown event type {type!r}")
    if not isinstance(data, expected):
        raise TypeError(f"{type} carries {expected.__name__}, not {data.__class__.__name__}")
    fields: dict[str, Any] = {
        "type": type,
        "source": source,
        "environment": environment,
        "subject": subject,
        "data": data,
    }
    if id is not None:
        fields["id"] = id
    return CloudEvent[EventData](**fields)


def encode_event(event: CloudEvent[Any]) -> bytes:
    return event.to_json_bytes()


_ENVELOPES: dict[str, type[CloudEvent[Any]]] = {}  # CloudEvent[model] by type, made on first use


def decode_event(body: bytes, *, type_hint: str | None = None) -> CloudEvent[EventData]:
    """The event in ``body``, its envelope and its data validated.

    ``type_hint``: the type the message says it carries (the AMQP ``type`` property, which
    ``build_message`` sets). When the body agrees it is validated straight from the bytes, without a
    dict in between; anything else (no such type, another type in the body, an invalid body) takes
    the general path, which decides and words the error.
    """
    if type_hint is not None:
        envelope = _ENVELOPES.get(type_hint)
        if envelope is None and (model := EVENT_MODELS.get(type_hint)) is not None:
            envelope = _ENVELOPES[type_hint] = CloudEvent[model]  # type: ignore[valid-type]
        if envelope is not None:
            try:
                event = envelope.model_validate_json(body)
            except ValidationError:
                pass
            else:
                if event.type == type_hint:
                    return event
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise EventDecodeError("an event must be a JSON object")
    event_type = raw.get("type")
    model = EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        # The value is not echoed: it came off the wire and may be anything, a secret included.
        raise EventDecodeError("unknown or missing event type")
    try:
        return CloudEvent[model].model_validate(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise EventDecodeError(
            f"invalid {event_type} event: {exc.error_count()} error(s): "
            f"{exc.errors(include_input=False, include_url=False)[:3]}"
        ) from exc

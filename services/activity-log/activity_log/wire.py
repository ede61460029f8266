"""Reading an event off the wire as plain dicts, checked the way the event models would check it.

The pydantic models of ``keyway_shared.events`` stay the contract, but building them costs more
CPU per event than everything else ingest does besides the database, on a machine where that CPU
is the database's. So the hot path parses the JSON once and checks it against shapes derived from
those very models at import: a payload that passes is one the models accept unchanged (no
coercion, no unknown constraint). Anything else (a number sent as a string, a time without a
zone, a field type this module has no check for) goes through the models themselves, which either
accept it (the event is then read from what they made of it) or reject it, and the message is
dead-lettered as before.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin

from keyway_shared.events import EVENT_MODELS, CloudEvent, EventData, decode_event

__all__ = ["WireEvent", "read_event", "wire_event"]

Check = Callable[[Any], bool]
# What pydantic certainly parses as an aware datetime and datetime.fromisoformat reads the same way.
_AWARE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})", re.ASCII
)


@dataclass(frozen=True, slots=True)
class WireEvent:
    """The envelope fields ingest reads, and the payload as the JSON dict a producer's model dumps to."""

    id: str
    type: str
    source: str
    environment: str
    time: datetime
    data: dict[str, Any]  # None values left out, absent defaults filled in: what ``model_dump`` gives
    size: int | None = None  # bytes on the wire; an upper bound for what the payload takes as JSON


def wire_event(event: CloudEvent[Any]) -> WireEvent:
    """An event already built as models (tests, the benchmark, in-process producers)."""
    data = event.data.model_dump(mode="json", exclude_none=True)
    return WireEvent(
        id=event.id, type=event.type, source=event.source, environment=event.environment, time=event.time, data=data
    )


def read_event(body: bytes) -> WireEvent:
    """The event in ``body``; :class:`EventDecodeError` when the event models reject it."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raw = None
    event = _read_fast(raw, len(body)) if type(raw) is dict else None
    return event if event is not None else wire_event(decode_event(body))


def _read_fast(raw: dict[str, Any], size: int) -> WireEvent | None:
    kind = raw.get("type")
    shape = _SHAPES.get(kind) if type(kind) is str else None
    if shape is None:
        return None
    event_id, source, environment, time = raw.get("id"), raw.get("source"), raw.get("environment"), raw.get("time")
    if not (_nonempty(event_id) and _nonempty(source) and _nonempty(environment)):
        return None
    at = _aware_time(time)
    if at is None:
        return None
    if raw.get("specversion", "1.0") != "1.0" or raw.get("datacontenttype", "application/json") != "application/json":
        return None
    subject, version = raw.get("subject"), raw.get("dataschemaversion", "1")
    if (subject is not None and type(subject) is not str) or type(version) is not str:
        return None
    data = raw.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict) or not shape(data):
        return None
    return WireEvent(
        id=str(event_id),
        type=kind,
        source=str(source),
        environment=str(environment),
        time=at,
        data=data,
        size=size,
    )


def _nonempty(value: Any) -> bool:
    return type(value) is str and value != ""


def _is_str(value: Any) -> bool:
    return type(value) is str


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_float(value: Any) -> bool:
    return type(value) is float  # an int would become a float in the model: the models decide


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _aware_time(value: Any) -> datetime | None:
    if type(value) is not str or _AWARE_TIME.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)  # also rejects what the pattern lets by (month 13, +25:00)
    except ValueError:
        return None


def _is_time(value: Any) -> bool:
    return _aware_time(value) is not None


def _is_object(value: Any) -> bool:
    return type(value) is dict


def _check_for(annotation: Any) -> Check | None:
    """A check that passes only values the model field accepts as they are; None when unsure."""
    simple: dict[Any, Check] = {str: _is_str, int: _is_int, float: _is_float, bool: _is_bool, datetime: _is_time}
    if annotation in simple:
        return simple[annotation]
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal and all(type(a) is str for a in args):
        allowed = frozenset(args)
        return lambda value: type(value) is str and value in allowed
    if origin in (Union, types.UnionType):
        parts = [_check_for(a) for a in args if a is not type(None)]
        if any(p is None for p in parts) or type(None) not in args or len(parts) != 1:
            return None  # only "X | None" is read here; None values are dropped before the checks
        return parts[0]
    if origin is dict and args and args[0] is str:
        return _is_object
    if isinstance(annotation, type) and issubclass(annotation, EventData):
        return _shape_of(annotation)
    return None


def _shape_of(model: type[EventData]) -> Check | None:
    """A check of a JSON object against ``model`` that also drops None values and fills in defaults."""
    if model.model_config.get("extra") != "allow":
        return None
    checks: dict[str, Check] = {}
    required: set[str] = set()
    defaults: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        check = _check_for(info.annotation)
        if check is None or info.metadata or info.alias is not None or info.default_factory is not None:
            return None  # a constraint, an alias or a factory this module does not model
        checks[name] = check
        if info.is_required():
            required.add(name)
        elif info.default is not None:
            defaults[name] = info.default

    def shape(value: Any) -> bool:
        if type(value) is not dict:
            return False
        if None in value.values():
            for key in [k for k, v in value.items() if v is None]:
                del value[key]  # model_dump(exclude_none=True) leaves them out too
        if not required <= value.keys():
            return False
        for name, item in value.items():
            check = checks.get(name)
            if check is not None and not check(item):
                return False
        for name, default in defaults.items():
            value.setdefault(name, default)
        return True

    return shape


_SHAPES: dict[str, Check] = {
    kind: shape for kind, model in EVENT_MODELS.items() if (shape := _shape_of(model)) is not None
}

"""Reading requests the way Nango's SDKs send them: bracket query keys, JSON bodies, validation.

Every JSON body goes through :func:`json_object`, which refuses what the rest of the gateway could
not hold or store, each with a 4xx naming the problem instead of a 500 further in: a body over
:data:`MAX_BODY_BYTES` (413) or slower than ``KEYWAY_HTTP_BODY_TIMEOUT_SECONDS`` (408), nesting over
:data:`MAX_DEPTH`, ``NaN``/``Infinity`` and numbers that overflow a float, integers outside
MongoDB's 64 bits, and lone UTF-16 surrogates (no UTF-8 for them, so neither BSON nor a JSON answer
can carry them). Views call :func:`check_document_keys` on the objects they store as document fields
(metadata, connection configuration), and read the body only once the caller is authenticated.
The body's timeout is the application's :data:`BODY_TIMEOUT_SECONDS`, which ``create_app`` sets from
the gateway's settings (this module reads no settings of its own).

The checks cost little on the usual body: numbers go through small hooks, and the walk over the
parsed value runs only when the raw bytes hold more brackets than the depth limit or a surrogate
escape, which a typical body does not (measured with timeit: a 200-byte metadata body parses in
3.1 µs against json.loads' 2.4 µs; a 10 kB one of 400 objects and arrays in 210 µs against 70).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from .errors import ApiError

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "bracket_params",
    "check_document_keys",
    "depth_exceeds",
    "json_object",
    "parse_json_object",
    "read_body",
    "validated_body",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_BODY_BYTES = 8 * 1024 * 1024  # half a MongoDB document: a larger body could not be stored anyway
MAX_DEPTH = 20  # objects and arrays, the body itself being 1
# KEYWAY_HTTP_BODY_TIMEOUT_SECONDS, set by create_app: how long a body may take once its head is in.
BODY_TIMEOUT_SECONDS = web.AppKey("body_timeout_seconds", float)
_INT64 = 2**63  # BSON's widest integer; a larger one fails the write
_INT_DIGITS = 20  # no int64 has more digits (with its sign): longer text is refused before int() runs

# Only a \u escape can make a lone surrogate (the strict UTF-8 decoding refuses encoded ones).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _RefusedError(Exception):
    """A parse hook's refusal, turned into the 400 by :func:`parse_json_object`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_int(text: str) -> int:
    if len(text) > _INT_DIGITS:
        raise _RefusedError("invalid_body", "The request body has an integer out of range (64-bit integers only).")
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise _RefusedError("invalid_body", "The request body has an integer out of range (64-bit integers only).")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _RefusedError("invalid_body", "The request body has a number too large for a 64-bit float.")
    return value


def _parse_constant(name: str) -> NoReturn:
    raise _RefusedError("invalid_json", f"The request body is not valid JSON: {name} is not a JSON number.")


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def bracket_params(query: MultiMapping[str], name: str) -> dict[str, str]:
    """``params[subdomain]=acme`` → ``{"subdomain": "acme"}`` (Express's qs parsing, flat values only).

    The SDK sends the literal ``undefined`` for a JS undefined value; it means "unset", so it is kept
    here as is and callers that care (authorization params) drop the key.

    The keys become keys of stored documents (connection configuration, the OAuth session), so one
    MongoDB would refuse (``$`` first, ``.`` or NUL anywhere) is a 400 here rather than a 500 there.
    """
    prefix = name + "["
    result: dict[str, str] = {}
    for key, value in query.items():
        if key.startswith(prefix) and key.endswith("]") and len(key) > len(prefix) + 1:
            inner = key[len(prefix) : -1]
            if not _storable_key(inner):
                raise ApiError(
                    "invalid_query_params",
                    f"{name}[{json.dumps(inner)[1:-1][:80]}]: keys may not start with '$' or contain '.' (or NUL).",
                )
            result[inner] = value
    return result


def _storable_key(key: str) -> bool:
    return not key.startswith("$") and "." not in key and "\x00" not in key


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's body as a JSON object, within the limits above (read it after authenticating)."""
    return parse_json_object(await read_body(request), required=required)


async def read_body(request: web.Request) -> bytes:
    """The request's raw body: 413 past :data:`MAX_BODY_BYTES`, 408 past :data:`BODY_TIMEOUT_SECONDS`."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _too_large()
    try:  # the head's timeout (app.py) ends when the head is in: a body sent byte by byte is bounded here
        async with asyncio.timeout(request.app[BODY_TIMEOUT_SECONDS]):
            raw = await request.read()
    except TimeoutError:
        raise ApiError("request_timeout", "The request body did not arrive in time.", status=408) from None
    if len(raw) > MAX_BODY_BYTES:  # a chunked body states no length
        raise _too_large()
    return raw


def _too_large() -> ApiError:
    return ApiError(
        "payload_too_big", f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.", status=413
    )


def parse_json_object(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """``raw`` as a JSON object, or the 400 that names what is wrong with it."""
    if not raw.strip():
        if required:
            raise ApiError("invalid_body", "The request body must be a JSON object.")
        return {}
    try:
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw)))
    except _RefusedError as refused:
        raise ApiError(refused.code, refused.message) from None
    except UnicodeDecodeError:
        raise ApiError("invalid_json", "The request body is not valid JSON: not UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise ApiError("invalid_json", f"The request body is not valid JSON: {exc.msg}.") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise ApiError("invalid_body", "The request body must be a JSON object.")
    brackets = raw.count(b"{") + raw.count(b"[")  # an upper bound of the depth, counted at C speed
    if brackets > MAX_DEPTH or _SURROGATE_ESCAPE.search(raw):
        _check_parsed(body, raw)
    return body


def _too_deep() -> ApiError:
    return ApiError("invalid_body", f"The request body is nested more than {MAX_DEPTH} levels deep.")


def _check_parsed(body: dict[str, Any], raw: bytes) -> None:
    if depth_exceeds(body, MAX_DEPTH):
        raise _too_deep()
    if _SURROGATE_ESCAPE.search(raw) and any(
        isinstance(node, str) and _SURROGATE.search(node) for node in _values_and_keys(body)
    ):
        raise ApiError("invalid_body", "The request body has a lone UTF-16 surrogate (\\ud800 to \\udfff).")


def depth_exceeds(root: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether ``root`` nests more than ``limit`` containers deep (itself 1).

    Level by level over the containers only: no recursion limit, about 0.2 µs a container.
    """
    level: list[Any] = [root]
    depth = 1
    while level:
        if depth > limit:
            return True
        deeper: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            deeper += [child for child in children if type(child) is dict or type(child) is list]
        level = deeper
        depth += 1
    return False


def _values_and_keys(root: Any) -> Iterator[Any]:
    """Every value and object key under ``root`` (iterative: no recursion limit)."""
    stack: list[Any] = [root]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, dict):
            yield from value.keys()
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def check_document_keys(value: dict[str, Any], field: str) -> None:
    """Refuse keys MongoDB will not take in a stored document: ``$`` first, ``.`` or NUL anywhere.

    For objects stored as they are (``metadata``, ``connection_config``); bodies validated by a model,
    or stored encrypted as one value (credentials), need no such check.
    """
    for node in _values_and_keys(value):
        if not isinstance(node, dict):
            continue
        for key in node:
            if not _storable_key(key):
                raise ApiError(
                    "invalid_body",
                    f"'{field}' has the key {json.dumps(key)[:80]}: keys may not start with '$' "
                    "or contain '.' (or NUL).",
                )


def validated_body(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """``body`` as ``model``, strictly as JSON types go: no ``0`` for a time, no ``false`` for a number.

    Pydantic's lax mode would turn ``{"since": 0}`` into 1970 and ``{"grace_seconds": false}`` into
    0; the body is validated in JSON mode (where a time is its ISO text) with coercion off.
    """
    try:
        return model.model_validate_json(json.dumps(body), strict=True)
    except ValidationError as exc:
        errors = [
            {"code": err["type"], "message": err["msg"], "path": [str(p) for p in err["loc"]]}
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ApiError("invalid_body", "The request body is invalid.", errors=errors) from exc

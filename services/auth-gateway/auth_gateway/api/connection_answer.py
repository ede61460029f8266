"""A connection's ``GET`` answer, encoded once per cached connection and stamped on each read.

Both generations' ``GET /connection[s]/{id}`` answer the same cached object many times a second,
and building the answer (the credentials' document, the refresh token stripped, three dates
formatted, the JSON encoder over the whole) was about a sixth of a cached read's CPU. Only
``last_fetched_at`` differs from one read to the next, so the answer is encoded once with a
placeholder in that field, kept on the connection (``Connection.encoded``) cut in two around it,
and each read writes its own time between the two halves.

The placeholder is a string no answer holds otherwise, but a connection's metadata is the app's: if
the placeholder's encoding is not found exactly once, that connection's answer is encoded on every
read, as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from keyway_shared.store import Connection

from ..http.serialize import connection_body, js_iso
from ..operations.deep_documents import json_text_without_deep_fields
from .connection_shape import full_connection_body, offset_iso

__all__ = ["DEEP_FIELDS", "answer_2024", "answer_current", "stamped_answer"]

DEEP_FIELDS = ("metadata", "connection_config")  # the app's own documents, maybe nested too deep (deep_documents)
_PLACEHOLDER = "\x00keyway-last-fetched-at\x00"
_PLACEHOLDER_JSON = json.dumps(_PLACEHOLDER).encode()

Body = Callable[[str | None], dict[str, Any]]  # the answer given its last_fetched_at
Halves = tuple[bytes, bytes] | None  # None: the placeholder could not be told apart


def stamped_answer(connection: Connection, name: str, last_fetched_at: str | None, body: Body) -> web.Response:
    """``body(last_fetched_at)`` as JSON; ``name`` tells apart the answers of one connection (route
    and flags): the same name must always mean the same ``body``."""
    if name in connection.encoded:
        halves: Halves = connection.encoded[name]
    else:
        halves = connection.encoded[name] = _halves(body(_PLACEHOLDER))
    if halves is None:
        text = json_text_without_deep_fields(body(last_fetched_at), fields=DEEP_FIELDS)
        return web.Response(text=text, content_type="application/json")
    head, tail = halves
    # Dates are ASCII with nothing to escape: the JSON string is the text in quotes.
    stamp = b"null" if last_fetched_at is None else b'"' + last_fetched_at.encode() + b'"'
    return web.Response(body=head + stamp + tail, content_type="application/json", charset="utf-8")


def answer_2024(connection: Connection, fetched_at: datetime, *, include_refresh_token: bool) -> web.Response:
    """``GET /connection/{id}``'s answer (``http/serialize``: JavaScript's dates)."""
    return stamped_answer(
        connection,
        "2024+refresh_token" if include_refresh_token else "2024",
        js_iso(fetched_at),
        lambda stamp: connection_body(connection, include_refresh_token=include_refresh_token, last_fetched_at=stamp),
    )


def answer_current(connection: Connection, fetched_at: datetime, *, include_refresh_token: bool) -> web.Response:
    """``GET /connections/{id}``'s answer (``connection_shape``: ``+00:00`` dates)."""
    return stamped_answer(
        connection,
        "current+refresh_token" if include_refresh_token else "current",
        offset_iso(fetched_at),
        lambda stamp: full_connection_body(
            connection, include_refresh_token=include_refresh_token, written=False, last_fetched_at=stamp
        ),
    )


def _halves(template: dict[str, Any]) -> Halves:
    encoded = json_text_without_deep_fields(template, fields=DEEP_FIELDS).encode()
    head, found, tail = encoded.partition(_PLACEHOLDER_JSON)
    if not found or _PLACEHOLDER_JSON in tail:
        return None
    return head, tail

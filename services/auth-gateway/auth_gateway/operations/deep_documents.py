"""Answering about connections stored before request bodies were limited in depth.

Metadata nested hundreds of levels deep could be stored until bodies were capped at
:data:`~auth_gateway.http.requests.MAX_DEPTH`. MongoDB itself refuses documents nested over 100 levels, but
the embedded server stores them and then fails (an internal error) any projection of such a
document, which is what the connection listing asks for, and a JSON encoder can run out of stack on
them. One old document must not take down the listing of a whole environment: the listing falls
back to whole documents, and shows ``null`` for metadata too deep to be answered.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from keyway_shared.logging import get_logger
from keyway_shared.store import Database

from ..http.requests import depth_exceeds

__all__ = [
    "SHOWN_DEPTH",
    "connection_list_response",
    "json_text_without_deep_fields",
    "json_without_deep_fields",
    "shown",
    "summaries_from_whole_documents",
]

log = get_logger(__name__)

SHOWN_DEPTH = 100  # MongoDB's own nesting limit: anything deeper is an old document of the embedded server


def shown(value: Any, *, what: str, connection_id: str) -> Any:
    """``value``, or ``None`` (with a log line) when it is nested too deep to be answered."""
    if isinstance(value, dict | list) and depth_exceeds(value, SHOWN_DEPTH):
        log.warning("not showing a field nested too deep", field=what, connection_id=connection_id)
        return None
    return value


async def summaries_from_whole_documents(
    db: Database, environment: str, *, connection_id: str | None, limit: int = 10_000
) -> list[dict[str, Any]]:
    """The listing's summaries read as whole documents (the projection is what the server fails on)."""
    log.warning("the connection listing failed; listing whole documents instead", environment=environment)
    query: dict[str, Any] = {"environment": environment}
    if connection_id:
        query["connection_id"] = connection_id
    cursor = db["connections"].find(query).sort("created_at", -1).limit(limit)
    summaries = []
    async for doc in cursor:
        summaries.append(
            {
                "id": doc.get("id"),
                "connection_id": doc["connection_id"],
                "provider_config_key": doc["provider_config_key"],
                "provider": doc["provider"],
                "created_at": doc.get("created_at"),
                "metadata": shown(doc.get("metadata"), what="metadata", connection_id=doc["connection_id"]),
            }
        )
    return summaries


def json_without_deep_fields(body: dict[str, Any], *, fields: tuple[str, ...], status: int = 200) -> web.Response:
    """``web.json_response(body)``; if the encoder runs out of stack, again without the too deep ``fields``."""
    return web.Response(
        text=json_text_without_deep_fields(body, fields=fields), status=status, content_type="application/json"
    )


def json_text_without_deep_fields(body: dict[str, Any], *, fields: tuple[str, ...]) -> str:
    """``json.dumps(body)``; if the encoder runs out of stack, again without the too deep ``fields``."""
    try:
        return json.dumps(body)
    except RecursionError:
        connection_id = str(body.get("connection_id"))
        safe = {k: shown(v, what=k, connection_id=connection_id) if k in fields else v for k, v in body.items()}
        return json.dumps(safe)


def connection_list_response(items: list[dict[str, Any]]) -> web.Response:
    """``{"connections": items}``; if the encoder runs out of stack, again without too deep metadata
    (both generations' list routes answer this way)."""
    try:
        return web.json_response({"connections": items})
    except RecursionError:
        for item in items:
            item["metadata"] = shown(item["metadata"], what="metadata", connection_id=item["connection_id"])
        return web.json_response({"connections": items})

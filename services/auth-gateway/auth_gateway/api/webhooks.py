"""Outgoing webhooks over the API (secret key): every delivery attempt, replays, signing keys, endpoints.

The gateway never sends a webhook itself: a replay is a command to the dispatcher, answered 202
with the request's id, and the attempts appear in ``GET /webhooks/deliveries`` as they happen. The
changes (replays, signing-key rotation, endpoints enabled) are ``operations.outgoing_webhooks``,
which the dashboard's buttons call too.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from keyway_shared.events import WebhookReplayRequested
from keyway_shared.service import MONGO_DB
from keyway_shared.store import Environment
from keyway_shared.store.client import db_now
from keyway_shared.store.webhook_deliveries import DeliveryLog, public_attempt
from keyway_shared.store.webhook_endpoints import EndpointStore
from keyway_shared.store.webhook_keys import DEFAULT_ROTATION_GRACE

from ..http.errors import ApiError
from ..http.requests import json_object, validated_body
from ..http.serialize import js_iso
from ..operations import outgoing_webhooks as operation
from ..operations.callers import secret_key

__all__ = [
    "enable_endpoint",
    "get_delivery",
    "list_deliveries",
    "list_endpoints",
    "list_signing_keys",
    "replay_delivery",
    "replay_failed",
    "rotate_signing_key",
]

_MAX_PAGE = 250
_FILTERS = ("delivery_id", "event_id", "connection_id", "url", "webhook_id")
_STATES = ("sending", "succeeded", "failed", "discarded")


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return js_iso(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _attempt_json(doc: dict[str, Any]) -> dict[str, Any]:
    shown = public_attempt(doc)
    shown.pop("environment", None)
    return _json(shown)  # type: ignore[no-any-return]


def _when(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError("invalid_query_params", f"'{name}' must be an ISO 8601 date-time.") from None
    if value.tzinfo is None:
        raise ApiError("invalid_query_params", f"'{name}' must carry a time zone (e.g. Z).")
    return value


def _cursor(doc: dict[str, Any]) -> str:
    text = f"{js_iso(doc['created_at'])}|{doc['_id']}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _from_cursor(raw: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        at, _, key = text.partition("|")
        return datetime.fromisoformat(at.replace("Z", "+00:00")), key
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError("invalid_query_params", "'cursor' is not a cursor this API gave out.") from None


def _log(request: web.Request) -> DeliveryLog:
    return DeliveryLog(request.app[MONGO_DB])


@secret_key
async def list_deliveries(request: web.Request, env: Environment) -> web.Response:
    """Attempts newest first, filtered by the query; ``next_cursor`` pages on."""
    filters: dict[str, Any] = {name: request.query[name] for name in _FILTERS if request.query.get(name)}
    state = request.query.get("state")
    if state:
        if state not in _STATES:
            raise ApiError("invalid_query_params", f"'state' is one of {', '.join(_STATES)}.")
        filters["state"] = state
    try:
        limit = min(int(request.query.get("limit", "100")), _MAX_PAGE)
    except ValueError:
        raise ApiError("invalid_query_params", "'limit' must be a number.") from None
    if limit < 1:
        raise ApiError("invalid_query_params", "'limit' must be at least 1.")
    cursor = request.query.get("cursor")
    docs = await _log(request).attempts(
        env.name,
        filters=filters,
        before=_from_cursor(cursor) if cursor else None,
        since=_when(request, "since"),
        until=_when(request, "until"),
        limit=limit,
    )
    return web.json_response(
        {
            "attempts": [_attempt_json(d) for d in docs],
            "next_cursor": _cursor(docs[-1]) if len(docs) == limit else None,
        }
    )


@secret_key
async def get_delivery(request: web.Request, env: Environment) -> web.Response:
    """Every attempt of one delivery, its replays included, oldest first."""
    delivery = request.match_info["deliveryId"]
    docs = await _log(request).attempts(env.name, filters={"delivery_id": delivery}, limit=_MAX_PAGE)
    if not docs:
        raise operation.unknown_delivery(delivery)
    docs.reverse()
    return web.json_response({"delivery_id": delivery, "attempts": [_attempt_json(d) for d in docs]})


@secret_key
async def replay_delivery(request: web.Request, env: Environment) -> web.Response:
    """Send one delivery again (to the URL now in its slot), with a fresh retry schedule."""
    delivery = request.match_info["deliveryId"]
    replay_id = await operation.replay_delivery(request.app, env, delivery)
    return web.json_response({"replay_id": replay_id, "delivery_id": delivery}, status=202)


class ReplayRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: AwareDatetime
    until: AwareDatetime | None = None


@secret_key
async def replay_failed(request: web.Request, env: Environment) -> web.Response:
    """Send again every delivery that gave up since a time (at most 10,000; the ones that later succeeded
    are left alone)."""
    body = validated_body(ReplayRange, await json_object(request))
    if body.until is not None and body.until < body.since:
        raise ApiError("invalid_body", "'until' is before 'since'.")
    replay_id = await operation.request_replay(
        request.app, env, WebhookReplayRequested(since=body.since, until=body.until)
    )
    return web.json_response({"replay_id": replay_id, "since": js_iso(body.since)}, status=202)


@secret_key
async def list_signing_keys(request: web.Request, env: Environment) -> web.Response:
    """The ``whsec_`` keys that sign now, newest first (two during a rotation's grace period)."""
    keys = await operation.signing_keys(request.app).keys(env.name)
    return web.json_response(
        {"keys": [{"key": k.key, "created_at": js_iso(k.created_at), "expires_at": js_iso(k.expires_at)} for k in keys]}
    )


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_seconds: int = Field(default=int(DEFAULT_ROTATION_GRACE.total_seconds()), ge=0, le=7 * 24 * 3600)


@secret_key
async def rotate_signing_key(request: web.Request, env: Environment) -> web.Response:
    """A new signing key, signing at once; the current keys keep signing beside it for the grace period."""
    body = validated_body(Rotation, await json_object(request, required=False))
    new = await operation.rotate_signing_key(request.app, env, grace=timedelta(seconds=body.grace_seconds))
    live = await operation.signing_keys(request.app).keys(env.name)
    return web.json_response(
        {
            "key": new.key,
            "created_at": js_iso(new.created_at),
            "previous_keys_expire_at": js_iso(max((k.expires_at for k in live if k.expires_at), default=None)),
        }
    )


@secret_key
async def list_endpoints(request: web.Request, env: Environment) -> web.Response:
    """The configured URLs and their health: disabled (410, or failing for days) or not."""
    states = await EndpointStore(request.app[MONGO_DB]).in_environment(env.name)
    endpoints = []
    for slot, url in (("primary", env.webhooks.primary_url), ("secondary", env.webhooks.secondary_url)):
        if not url:
            continue
        state = states.get(url)
        shown = state.to_json() if state else {"url": url, "disabled": False}
        endpoints.append({"slot": slot, **_json(shown)})
    return web.json_response({"endpoints": endpoints})


class EndpointRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str


@secret_key
async def enable_endpoint(request: web.Request, env: Environment) -> web.Response:
    """Deliver to a disabled URL again (deliveries dropped meanwhile can be replayed)."""
    body = validated_body(EndpointRef, await json_object(request))
    enabled = await operation.enable_endpoint(request.app, env, body.url)
    return web.json_response({"url": body.url, "enabled": True, "was_disabled": enabled, "at": js_iso(db_now())})

"""The activity log's wire reader agrees with the event models: whatever it reads without them, the
models read the same; whatever the models reject, it rejects (no broker or database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activity_log import wire
from activity_log.entries import entry_for
from activity_log.wire import read_event, wire_event
from keyway_shared.events import (
    ActivityMessage,
    AuthFailed,
    ConnectionCreated,
    ConnectionUpdated,
    ErrorInfo,
    EventDecodeError,
    HttpExcerpt,
    TokenRefreshed,
    TokenRefreshFailed,
    WebhookDelivered,
    WebhookFailed,
    decode_event,
)

from ..support.inproc import event

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
CONN = {"connection_id": "c-1", "provider_config_key": "github-x", "provider": "github", "auth_mode": "OAUTH2"}
HOOK = {"delivery_id": "d-1", "event_id": "e-1", "url": "https://u:pw@h.example/in?token=abc&x=1", "attempt": 2}

PRODUCED = [
    event("connection.created", ConnectionCreated(**CONN, operation_id="op-1"), time=T0),
    event("connection.updated", ConnectionUpdated(**CONN, operation="metadata"), time=T0),
    event("auth.failed", AuthFailed(error=ErrorInfo(type="token_err", description="code=abc denied")), time=T0),
    event("token.refreshed", TokenRefreshed(**CONN, recovered=True), time=T0),
    event(
        "token.refresh_failed",
        TokenRefreshFailed(**CONN, error=ErrorInfo(type="x", description="Bearer abcdef123"), exhausted=True),
        time=T0,
    ),
    event("webhook.delivered", WebhookDelivered(**HOOK, status=200, duration_ms=12.5), time=T0),
    event(
        "webhook.failed",
        WebhookFailed(**HOOK, error=ErrorInfo(type="http_500", description="HTTP 500"), final=False),
        time=T0,
    ),
    event(
        "activity.message",
        ActivityMessage(
            operation_id="op-1",
            operation_type="auth:create_connection",
            message="Token request answered",
            state="failed",
            request=HttpExcerpt(method="POST", url="https://p.io/t?code=abc", status=400, body='{"id_token":"x"}'),
            meta={"client": "sdk", "n": None},
        ),
        time=T0,
    ),
]


def _body(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw).encode()


def _raw(index: int) -> dict[str, Any]:
    return dict(json.loads(PRODUCED[index].to_json_bytes()))


def _same(body: bytes) -> None:
    """``read_event`` gives what the models give, or both reject."""
    try:
        expected = wire_event(decode_event(body))
    except EventDecodeError:
        with pytest.raises(EventDecodeError):
            read_event(body)
        return
    got = read_event(body)
    assert (got.id, got.type, got.source, got.environment, got.time) == (
        expected.id,
        expected.type,
        expected.source,
        expected.environment,
        expected.time,
    )
    assert got.data == expected.data


@pytest.mark.parametrize("index", range(len(PRODUCED)), ids=[e.type for e in PRODUCED])
def test_what_producers_publish_is_read_without_the_models(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    body = PRODUCED[index].to_json_bytes()
    _same(body)

    def no_models(_body: bytes) -> Any:
        raise AssertionError("the models were asked")

    monkeypatch.setattr(wire, "decode_event", no_models)
    read_event(body)  # the fast path alone


@pytest.mark.parametrize("index", range(len(PRODUCED)), ids=[e.type for e in PRODUCED])
def test_the_entry_is_the_same_whichever_way_the_event_was_read(index: int) -> None:
    retention = timedelta(days=15)
    from_models = entry_for(PRODUCED[index], retention=retention)
    from_wire = entry_for(read_event(PRODUCED[index].to_json_bytes()), retention=retention)
    assert from_wire == from_models


CHANGES: list[tuple[str, int, Any]] = [
    # (what, event index, change to the raw event): each is either coerced or rejected by the models
    ("duration as an int", 5, lambda r: r["data"].update(duration_ms=12)),
    ("status as a string", 5, lambda r: r["data"].update(status="200")),
    ("attempt missing", 5, lambda r: r["data"].pop("attempt")),
    ("unknown auth mode", 0, lambda r: r["data"].update(auth_mode="MAGIC")),
    ("naive time", 0, lambda r: r.update(time="2026-05-01T12:00:00")),
    ("offset time", 0, lambda r: r.update(time="2026-05-01T14:00:00+02:00")),
    ("time as a number", 0, lambda r: r.update(time=1777636800)),
    ("month 13", 0, lambda r: r.update(time="2026-13-01T12:00:00Z")),
    ("offset out of range", 0, lambda r: r.update(time="2026-05-01T12:00:00+25:00")),
    ("other digits", 0, lambda r: r.update(time="\u0662026-05-01T12:00:00Z")),
    ("payload time month 13", 0, lambda r: r["data"].update(credentials_expire_at="2026-13-01T00:00:00Z")),
    ("payload time", 0, lambda r: r["data"].update(credentials_expire_at="2026-06-01T00:00:00+02:00")),
    ("empty id", 0, lambda r: r.update(id="")),
    ("no environment", 0, lambda r: r.pop("environment")),
    ("other spec version", 0, lambda r: r.update(specversion="0.3")),
    ("unknown type", 0, lambda r: r.update(type="connection.exploded")),
    ("data not an object", 0, lambda r: r.update(data=[1, 2])),
    ("error without description", 2, lambda r: r["data"]["error"].pop("description")),
    ("explicit nulls", 6, lambda r: r["data"].update(status=None, operation_id=None)),
    ("extra fields", 3, lambda r: r["data"].update(region="eu", nested={"a": None})),
    ("bad level", 7, lambda r: r["data"].update(level="loud")),
    ("meta not an object", 7, lambda r: r["data"].update(meta=["x"])),
    ("boolean as int", 6, lambda r: r["data"].update(final=0)),
]


@pytest.mark.parametrize(("what", "index", "change"), CHANGES, ids=[c[0] for c in CHANGES])
def test_anything_unusual_is_read_as_the_models_read_it(what: str, index: int, change: Any) -> None:
    raw = _raw(index)
    change(raw)
    _same(_body(raw))


def test_not_json_is_rejected() -> None:
    for body in (b"{", b"[]", b"\xff", b'"x"'):
        with pytest.raises(EventDecodeError):
            read_event(body)


def test_a_webhook_url_keeps_no_secret_anywhere_in_the_entry() -> None:
    entry = entry_for(read_event(PRODUCED[5].to_json_bytes()), retention=timedelta(days=1))
    stored = json.dumps(entry.message, default=str)
    assert "pw@" not in stored
    assert "token=abc" not in stored
    assert entry.message["meta"]["url"] == entry.message["request"]["url"]

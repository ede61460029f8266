"""The CloudEvents envelope, the per-type models and the codec between them and bytes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyway_shared.events import (
    EVENT_MODELS,
    ActivityMessage,
    AuthFailed,
    CloudEvent,
    ConnectionCreated,
    ConnectionDeleted,
    ConnectionUpdated,
    ErrorInfo,
    EventData,
    EventDecodeError,
    HttpExcerpt,
    TokenRefreshed,
    TokenRefreshFailed,
    WebhookDelivered,
    WebhookEndpointDisabled,
    WebhookFailed,
    WebhookReplayRequested,
    decode_event,
    encode_event,
    make_event,
)

EXPIRY = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
CONNECTION: dict[str, Any] = {"connection_id": "user-1", "provider_config_key": "github-dev", "provider": "github"}

SAMPLES: dict[str, EventData] = {
    "connection.created": ConnectionCreated(**CONNECTION, auth_mode="OAUTH2", credentials_expire_at=EXPIRY),
    "connection.updated": ConnectionUpdated(**CONNECTION, auth_mode="API_KEY", operation="metadata"),
    "connection.deleted": ConnectionDeleted(**CONNECTION, auth_mode="BASIC", operation_id="op-1"),
    "auth.failed": AuthFailed(
        provider_config_key="github-dev", error=ErrorInfo(type="token_err", description="exchange failed")
    ),
    "token.refreshed": TokenRefreshed(**CONNECTION, auth_mode="OAUTH2", recovered=True, attempt=2),
    "token.refresh_failed": TokenRefreshFailed(
        **CONNECTION,
        auth_mode="OAUTH2",
        error=ErrorInfo(type="refresh_token_external_error", description="invalid_grant"),
        failed_days=3,
        exhausted=True,
    ),
    "webhook.delivered": WebhookDelivered(
        delivery_id="d-1", event_id="e-1", url="https://app.example/hook", status=200, attempt=1, duration_ms=12.5
    ),
    "webhook.failed": WebhookFailed(
        delivery_id="d-1",
        event_id="e-1",
        url="https://app.example/hook",
        status=503,
        attempt=2,
        error=ErrorInfo(type="http_status", description="503"),
        final=False,
        next_attempt_at=EXPIRY,
    ),
    "webhook.replay_requested": WebhookReplayRequested(since=EXPIRY),
    "webhook.endpoint_disabled": WebhookEndpointDisabled(
        url="https://app.example/hook", reason="failing", failing_since=EXPIRY, delivery_id="d-1"
    ),
    "activity.message": ActivityMessage(
        operation_id="op-1",
        operation_type="auth:create_connection",
        level="warn",
        message="ünïcødé ✓",
        state="running",
        request=HttpExcerpt(method="POST", url="https://github.com/login/oauth/access_token", status=200),
        meta={"nested": {"list": [1, 2.5, None, True]}},
    ),
}


def test_every_event_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_MODELS)


def test_envelope_fields() -> None:
    event = make_event(
        SAMPLES["connection.created"],
        type="connection.created",
        source="/keyway/auth-gateway",
        environment="dev",
        subject="github-dev/user-1",
    )
    wire = json.loads(encode_event(event))
    assert wire["specversion"] == "1.0"
    assert wire["type"] == "connection.created"
    assert wire["source"] == "/keyway/auth-gateway"
    assert wire["subject"] == "github-dev/user-1"
    assert wire["datacontenttype"] == "application/json"
    assert wire["environment"] == "dev"
    assert wire["dataschemaversion"] == "1"
    assert str(uuid.UUID(wire["id"])) == wire["id"]
    sent_at = datetime.fromisoformat(wire["time"].replace("Z", "+00:00"))
    assert sent_at.tzinfo is not None
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
    assert wire["data"] == {
        **CONNECTION,
        "auth_mode": "OAUTH2",
        "credentials_expire_at": "2030-01-02T03:04:05Z",
        "operation": "creation",
    }


def test_ids_are_unique_and_an_explicit_id_is_kept() -> None:
    data = SAMPLES["connection.deleted"]
    first = make_event(data, type="connection.deleted", source="/s", environment="dev")
    second = make_event(data, type="connection.deleted", source="/s", environment="dev")
    assert first.id != second.id
    pinned = make_event(data, type="connection.deleted", source="/s", environment="dev", id="evt-42")
    assert pinned.id == "evt-42"
    assert decode_event(encode_event(pinned)).id == "evt-42"


def test_subject_is_omitted_when_absent() -> None:
    event = make_event(SAMPLES["auth.failed"], type="auth.failed", source="/s", environment="prod")
    assert "subject" not in json.loads(encode_event(event))


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_round_trip_every_type(event_type: str) -> None:
    data = SAMPLES[event_type]
    event = make_event(data, type=event_type, source="/keyway/test", environment="prod", subject="s")
    decoded = decode_event(encode_event(event))
    assert decoded.type == event_type
    assert type(decoded.data) is EVENT_MODELS[event_type]
    assert decoded.data == data
    assert (decoded.id, decoded.source, decoded.environment, decoded.subject, decoded.time) == (
        event.id,
        event.source,
        event.environment,
        event.subject,
        event.time,
    )
    assert encode_event(decoded) == encode_event(event)


def test_unknown_data_fields_survive_a_round_trip() -> None:
    # An older consumer reading a newer event keeps the fields it does not know.
    raw = json.loads(
        encode_event(make_event(SAMPLES["connection.deleted"], type="connection.deleted", source="/s", environment="d"))
    )
    raw["data"]["added_later"] = {"x": 1}
    decoded = decode_event(json.dumps(raw).encode())
    assert json.loads(encode_event(decoded))["data"]["added_later"] == {"x": 1}


def _valid_wire(event_type: str = "connection.created") -> dict[str, Any]:
    event = make_event(SAMPLES[event_type], type=event_type, source="/s", environment="dev")
    result: dict[str, Any] = json.loads(encode_event(event))
    return result


SECRET = "sk_live_SUPERSECRET_123"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json " + SECRET.encode(), "not JSON"),
        (b"\xff\xfe" + SECRET.encode(), "not JSON"),
        (json.dumps([SECRET]).encode(), "JSON object"),
        (json.dumps({**_valid_wire(), "type": "connection.exploded"}).encode(), "unknown or missing event type"),
        (json.dumps({k: v for k, v in _valid_wire().items() if k != "type"}).encode(), "unknown or missing event type"),
        (json.dumps({**_valid_wire(), "data": {"connection_id": SECRET}}).encode(), "invalid connection.created"),
        (
            json.dumps({**_valid_wire(), "data": {**_valid_wire()["data"], "auth_mode": SECRET}}).encode(),
            "invalid connection.created",
        ),
        (json.dumps({**_valid_wire(), "specversion": "0.3", "source": SECRET}).encode(), "invalid"),
        (json.dumps({**_valid_wire(), "environment": ""}).encode(), "invalid"),
        (json.dumps({**_valid_wire(), "time": SECRET}).encode(), "invalid"),
    ],
    ids=[
        "bad-json",
        "bad-utf8",
        "not-an-object",
        "unknown-type",
        "missing-type",
        "missing-data-fields",
        "bad-enum",
        "bad-specversion",
        "empty-environment",
        "bad-time",
    ],
)
def test_decode_errors(body: bytes, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message) as error:
        decode_event(body)
    # An error message is logged; it must never repeat what the message carried.
    assert SECRET not in str(error.value)
    assert SECRET not in repr(error.value)


def test_decode_error_does_not_echo_an_unknown_type_value() -> None:
    # The type string comes from the wire too; a huge or hostile one must not be logged verbatim.
    with pytest.raises(EventDecodeError) as error:
        decode_event(json.dumps({**_valid_wire(), "type": SECRET}).encode())
    assert SECRET not in str(error.value)


def test_make_event_rejects_a_mismatched_model() -> None:
    with pytest.raises(TypeError, match="ConnectionCreated"):
        make_event(SAMPLES["connection.deleted"], type="connection.created", source="/s", environment="dev")
    with pytest.raises(ValueError, match="unknown event type"):
        make_event(SAMPLES["connection.created"], type="connection.exploded", source="/s", environment="dev")


def test_envelope_requires_source_and_environment() -> None:
    data = ConnectionDeleted(**CONNECTION, auth_mode="BASIC")
    with pytest.raises(ValueError, match="source"):
        CloudEvent[ConnectionDeleted](type="connection.deleted", source="", environment="dev", data=data)
    with pytest.raises(ValueError, match="environment"):
        CloudEvent[ConnectionDeleted](type="connection.deleted", source="/s", environment="", data=data)


def test_payloads_are_immutable() -> None:
    data = ConnectionCreated(**CONNECTION, auth_mode="OAUTH2")
    with pytest.raises(ValueError, match="frozen"):
        data.connection_id = "other"  # type: ignore[misc]


def test_header_fields() -> None:
    event = make_event(SAMPLES["auth.failed"], type="auth.failed", source="/keyway/gw", environment="prod")
    assert event.header_fields() == {
        "ce_id": event.id,
        "ce_type": "auth.failed",
        "ce_source": "/keyway/gw",
        "environment": "prod",
    }

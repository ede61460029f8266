"""Decoding with the message's AMQP type as a hint: the same event, or the same error, as without."""

from __future__ import annotations

import pytest

from keyway_shared.events import ConnectionCreated, EventDecodeError, TokenRefreshed, decode_event, make_event


def _body() -> bytes:
    data = ConnectionCreated(connection_id="c", provider_config_key="k", provider="p", auth_mode="API_KEY")
    return make_event(data, type="connection.created", source="/t", environment="dev").to_json_bytes()


def test_a_true_hint_gives_the_same_event() -> None:
    body = _body()
    fast = decode_event(body, type_hint="connection.created")
    assert fast == decode_event(body)
    assert isinstance(fast.data, ConnectionCreated)


@pytest.mark.parametrize("hint", ["token.refreshed", "no.such.type", "", None])
def test_a_wrong_or_unknown_hint_is_ignored(hint: str | None) -> None:
    event = decode_event(_body(), type_hint=hint)
    assert event.type == "connection.created"
    assert isinstance(event.data, ConnectionCreated)
    assert not isinstance(event.data, TokenRefreshed)


def test_an_invalid_body_fails_as_without_a_hint() -> None:
    body = _body().replace(b'"connection_id":"c",', b"")
    with pytest.raises(EventDecodeError) as hinted:
        decode_event(body, type_hint="connection.created")
    with pytest.raises(EventDecodeError) as plain:
        decode_event(body)
    assert str(hinted.value) == str(plain.value)

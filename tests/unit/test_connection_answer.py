"""A cached connection's GET answer: encoded once, stamped per read, byte for byte what encoding it
whole would give (``api/connection_answer``)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from auth_gateway.api import connection_answer
from auth_gateway.api.connection_answer import _PLACEHOLDER
from auth_gateway.api.connection_shape import full_connection_json
from auth_gateway.http.serialize import connection_json, js_iso
from keyway_shared.credentials.shapes import OAuth2Credentials
from keyway_shared.store import Connection

CREATED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def oauth_connection(metadata: dict[str, Any] | None = None) -> Connection:
    credentials = OAuth2Credentials(
        access_token="at-1",
        refresh_token="rt-secret",
        expires_at="2026-01-02T04:04:05.678Z",
        raw={"access_token": "at-1", "refresh_token": "rt-secret", "scope": "read ünïcode"},
    )
    return Connection(
        environment="dev",
        provider_config_key="gh",
        connection_id="u-1",
        provider="github",
        auth_mode="OAUTH2",
        credentials=credentials,
        connection_config={"subdomain": "acme"},
        metadata=metadata if metadata is not None else {"plan": "pro", "note": 'quote " and \\ and \u2028'},
        id=7,
        created_at=CREATED,
        updated_at=CREATED + timedelta(minutes=1),
        end_user={"id": "eu-1", "email": "a@b.c"},
        tags={"team": "x"},
    )


def body_of(response: web.Response) -> Any:
    assert response.content_type == "application/json"
    assert response.charset == "utf-8"
    assert response.body is not None
    return json.loads(bytes(response.body))  # type: ignore[arg-type]


def answer_2024(connection: Connection, fetched: datetime, *, refresh: bool) -> web.Response:
    return connection_answer.answer_2024(connection, fetched, include_refresh_token=refresh)


def answer_current(connection: Connection, fetched: datetime, *, refresh: bool) -> web.Response:
    return connection_answer.answer_current(connection, fetched, include_refresh_token=refresh)


@pytest.mark.parametrize("refresh", [False, True])
def test_each_read_gets_its_own_time_in_the_answer_a_whole_encoding_gives(refresh: bool) -> None:
    connection = oauth_connection()
    for minutes in (1, 2, 3):
        fetched = CREATED + timedelta(hours=minutes)
        response = answer_2024(connection, fetched, refresh=refresh)
        expected = connection_json(connection, include_refresh_token=refresh, fetched_at=fetched)
        assert body_of(response) == expected
        assert bytes(response.body) == json.dumps(expected).encode()  # type: ignore[arg-type]
        assert body_of(response)["last_fetched_at"] == js_iso(fetched)
    # One encoding per flag, kept on the connection; the refresh token only where asked for.
    assert list(connection.encoded) == ["2024+refresh_token" if refresh else "2024"]
    assert (b"rt-secret" in bytes(answer_2024(connection, CREATED, refresh=refresh).body)) is refresh  # type: ignore[arg-type]


@pytest.mark.parametrize("refresh", [False, True])
def test_the_current_routes_answer_is_stamped_the_same_way(refresh: bool) -> None:
    connection = oauth_connection()
    for hours in (1, 2):
        fetched = CREATED + timedelta(hours=hours)
        response = answer_current(connection, fetched, refresh=refresh)
        assert body_of(response) == full_connection_json(connection, include_refresh_token=refresh, fetched_at=fetched)
        assert body_of(response)["last_fetched_at"].endswith("+00:00")
    assert (b"rt-secret" in bytes(answer_current(connection, CREATED, refresh=refresh).body)) is refresh  # type: ignore[arg-type]


def test_the_two_routes_and_flags_keep_apart_answers() -> None:
    connection = oauth_connection()
    fetched = CREATED + timedelta(hours=1)
    first = body_of(answer_2024(connection, fetched, refresh=False))
    current = body_of(answer_current(connection, fetched, refresh=False))
    assert "environment" in first
    assert "environment" not in current
    assert set(connection.encoded) == {"2024", "current"}


def test_metadata_holding_the_placeholder_is_answered_whole_every_time() -> None:
    # The metadata is the app's: it may hold anything, even the placeholder itself.
    connection = oauth_connection(metadata={"trap": _PLACEHOLDER})
    for hours in (1, 2):
        fetched = CREATED + timedelta(hours=hours)
        body = body_of(answer_2024(connection, fetched, refresh=False))
        assert body["metadata"] == {"trap": _PLACEHOLDER}
        assert body["last_fetched_at"] == js_iso(fetched)
    assert connection.encoded == {"2024": None}


def test_metadata_too_deep_for_the_encoder_is_answered_as_null() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(5000):
        deep = {"a": deep}
    connection = oauth_connection(metadata=deep)
    body = body_of(answer_2024(connection, CREATED, refresh=False))
    assert body["metadata"] is None
    assert body["credentials"]["access_token"] == "at-1"
    assert body["last_fetched_at"] == js_iso(CREATED)


def test_a_copy_of_a_connection_does_not_inherit_its_answers() -> None:

    connection = oauth_connection()
    answer_2024(connection, CREATED, refresh=False)
    changed = dataclasses.replace(connection, metadata={"plan": "free"})
    assert changed.encoded == {}
    assert body_of(answer_2024(changed, CREATED, refresh=False))["metadata"] == {"plan": "free"}
    assert changed != oauth_connection()
    assert connection == oauth_connection()

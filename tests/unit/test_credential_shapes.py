"""Typed credentials keep the stored document exactly, and each type says how it is used.

The store reads every connection's credentials through ``parse_credentials`` and writes ``dump()``;
``GET /connection`` answers ``dump()``. So a document must come back with the same keys, in the same
order, unknown keys and malformed ones included, or a read-then-write would change what is stored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from keyway_shared.auth_modes import AUTH_MODES, MODE_FACTS
from keyway_shared.credentials import oauth2_credentials, parse_credentials
from keyway_shared.credentials.importing import ImportBody, ImportRefusedError
from keyway_shared.credentials.shapes import (
    CREDENTIAL_SHAPES,
    ApiKeyCredentials,
    AppCredentials,
    BasicCredentials,
    ClientCredentials,
    JwtCredentials,
    NoCredentials,
    OAuth1Credentials,
    OAuth2Credentials,
    SignatureCredentials,
    TbaCredentials,
    UnknownCredentials,
    UnusableCredentialsError,
    import_credentials,
)
from keyway_shared.refresh.policy import REFRESHABLE_TYPES

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

STORED: list[tuple[dict[str, Any], type]] = [
    ({}, NoCredentials),
    ({"type": "NONE"}, NoCredentials),
    # the order an import writes (raw before the refresh token), with a key no class names
    (
        {"type": "OAUTH2", "access_token": "a", "raw": {"x": 1}, "refresh_token": "r", "expires_at": "z", "id_tok": 1},
        OAuth2Credentials,
    ),
    ({"type": "OAUTH2", "access_token": "a", "refresh_token": None}, OAuth2Credentials),
    ({"raw": {}, "type": "OAUTH1", "oauth_token_secret": "s", "oauth_token": "t"}, OAuth1Credentials),
    ({"type": "OAUTH2_CC", "access_token": "t", "client_id": "c"}, ClientCredentials),
    (
        {"type": "APP", "access_token": "t", "expires_at": "2025-03-01T13:00:00.000Z", "raw": {"token": "t"}},
        AppCredentials,
    ),
    ({"type": "API_KEY", "apiKey": "k", "note": "from Nango"}, ApiKeyCredentials),
    ({"type": "BASIC", "username": "u"}, BasicCredentials),
    ({"type": "TBA", "token_id": "i", "token_secret": "s", "config_override": {"client_id": "c"}}, TbaCredentials),
    ({"type": "JWT", "privateKey": {"id": "i", "secret": "s"}, "token": "t", "expires_at": "x"}, JwtCredentials),
    ({"type": "SIGNATURE", "username": "u", "password": "p", "token": "t"}, SignatureCredentials),
    # what does not fit its type, and what this version does not know, is kept and used for nothing
    ({"type": "OAUTH2", "refresh_token": "r"}, UnknownCredentials),
    ({"type": "API_KEY", "api_key": "k"}, UnknownCredentials),  # a stored key is read by its own name
    ({"type": "TABLEAU", "token": "t"}, UnknownCredentials),
    ({"type": 5}, UnknownCredentials),
    ({"token": "t"}, UnknownCredentials),
]


@pytest.mark.parametrize(("document", "shape"), STORED)
def test_a_stored_document_comes_back_exactly(document: dict[str, Any], shape: type) -> None:
    credentials = parse_credentials(json.loads(json.dumps(document)))
    assert type(credentials) is shape
    assert json.dumps(credentials.dump()) == json.dumps(document)  # keys, order and values
    assert json.dumps(credentials.with_fields().dump()) == json.dumps(document)


def test_no_secret_in_a_repr() -> None:
    credentials = parse_credentials({"type": "OAUTH2", "access_token": "secret-token", "raw": {"a": "secret-raw"}})
    assert "secret" not in repr(credentials)
    assert "secret" not in str(credentials)


def test_built_credentials_are_the_documents_the_flows_stored() -> None:
    """A class built in code: ``type`` first, its arguments in their order, the ``None`` ones left out."""
    built, expires_at = oauth2_credentials(
        {"access_token": "A", "expires_in": 3600, "token_type": "bearer"}, now=NOW, previous_refresh_token="old"
    )
    assert expires_at == datetime(2025, 3, 1, 13, 0, tzinfo=UTC)
    assert json.dumps(built.dump()) == json.dumps(
        {
            "type": "OAUTH2",
            "access_token": "A",
            "refresh_token": "old",
            "expires_at": "2025-03-01T13:00:00.000Z",
            "raw": {
                "access_token": "A",
                "expires_in": 3600,
                "token_type": "bearer",
                "expires_at": "2025-03-01T13:00:00.000Z",
            },
        }
    )
    overridden = built.with_fields(config_override={"client_id": "c", "client_secret": "s"})
    assert list(overridden.dump()) == ["type", "access_token", "refresh_token", "expires_at", "raw", "config_override"]
    assert overridden.override("client_id") == "c"
    assert OAuth2Credentials(access_token="A").dump() == {"type": "OAUTH2", "access_token": "A"}
    assert ApiKeyCredentials(api_key="k").dump() == {"type": "API_KEY", "apiKey": "k"}
    assert NoCredentials().dump() == {}
    assert json.dumps(BasicCredentials(username="u", password="").dump()) == json.dumps(
        {"type": "BASIC", "username": "u", "password": ""}
    )


def test_how_each_type_authenticates_a_request() -> None:
    assert OAuth2Credentials(access_token="t").authorization() == "Bearer t"
    assert OAuth2Credentials(access_token="t").template_variables() == {"accessToken": "t"}
    assert parse_credentials({"type": "OAUTH2_CC", "access_token": "old-name"}).authorization() == "Bearer old-name"
    assert BasicCredentials(username="u").authorization() == "Basic dTo="  # "u:"
    assert ApiKeyCredentials(api_key="k").authorization() is None  # the template's headers or query carry it
    assert ApiKeyCredentials(api_key="k").template_variables() == {"apiKey": "k"}
    for document in ({}, {"type": "CUSTOM"}, {"type": "TABLEAU", "token": "t"}):
        credentials = parse_credentials(document)
        assert (credentials.authorization(), credentials.template_variables()) == (None, {})
    with pytest.raises(UnusableCredentialsError) as caught:
        parse_credentials({"type": "OAUTH2_CC", "client_id": "c"}).authorization()
    assert caught.value.code == "invalid_credentials"
    for signed in (
        OAuth1Credentials(oauth_token="t", oauth_token_secret="s"),
        TbaCredentials(token_id="i", token_secret="s"),
    ):
        with pytest.raises(UnusableCredentialsError) as caught:
            signed.authorization()
        assert (caught.value.code, caught.value.message) == (
            "invalid_auth_mode",
            f"{signed.type} credentials sign each request; this call can only add a header, so it cannot use them.",
        )


def test_the_types_a_refresh_renews() -> None:
    assert sorted(REFRESHABLE_TYPES) == [
        "APP",
        "APP_STORE",
        "AWS_SIGV4",
        "BILL",
        "JWT",
        "OAUTH2",
        "OAUTH2_CC",
        "SIGNATURE",
        "TWO_STEP",
    ]
    assert not parse_credentials({"type": "OAUTH2"}).refreshable  # unreadable: nothing to renew with


def body(fields: dict[str, Any], config: dict[str, Any] | None = None) -> ImportBody:
    return ImportBody(fields, connection_config=config or {}, now=NOW)


def test_an_import_stores_what_it_stored_before() -> None:
    credentials, expires_at = import_credentials(
        "CUSTOM",
        body({"access_token": "a", "expires_in": 60, "refresh_token": "r", "oauth_client_secret_override": "s"}),
    )
    assert expires_at == datetime(2025, 3, 1, 12, 1, tzinfo=UTC)
    assert json.dumps(credentials.dump()) == json.dumps(
        {
            "type": "OAUTH2",
            "access_token": "a",
            "raw": {"access_token": "a", "expires_in": 60, "refresh_token": "r", "oauth_client_secret_override": "s"},
            "refresh_token": "r",
            "expires_at": "2025-03-01T12:01:00.000Z",
            "config_override": {"client_secret": "s"},
        }
    )
    assert import_credentials("NONE", body({}))[0].dump() == {}
    basic, never = import_credentials("BASIC", body({"username": "u"}))
    assert (basic.dump(), never) == ({"type": "BASIC", "username": "u", "password": ""}, None)
    assert import_credentials("API_KEY", body({"api_key": "k"}))[0].dump() == {"type": "API_KEY", "apiKey": "k"}


@pytest.mark.parametrize(
    ("mode", "fields", "config", "code"),
    [
        ("OAUTH2", {"expires_in": 5}, {}, "missing_access_token"),  # before the expiry is looked at
        ("OAUTH2", {"access_token": "a"}, {}, "missing_expires_at"),
        ("OAUTH2", {"access_token": "a", "expires_at": "soon"}, {}, "invalid_expires_at"),
        ("OAUTH2", {"access_token": "a", "no_expiration": True, "refresh_token": 5}, {}, "invalid_body"),
        ("TBA", {"token_id": "i", "token_secret": "s"}, {}, "missing_account_id"),
        ("TBA", {"token_id": "i"}, {"accountId": "1"}, "missing_token_secret"),
        ("APP", {}, {}, "invalid_auth_mode"),
        ("APP_STORE", {}, {}, "invalid_auth_mode"),
        ("OAUTH2_CC", {}, {}, "invalid_auth_mode"),
    ],
)
def test_an_import_refuses_what_it_refused(
    mode: Any, fields: dict[str, Any], config: dict[str, Any], code: str
) -> None:
    with pytest.raises(ImportRefusedError) as caught:
        import_credentials(mode, body(fields, config))
    assert caught.value.code == code


def test_every_mode_an_import_stores_names_a_type_that_reads_an_import() -> None:
    importable = [mode for mode in AUTH_MODES if MODE_FACTS[mode].imported_as is not None]
    assert {"OAUTH2", "CUSTOM", "NONE", "TBA"} <= set(importable)
    for mode in importable:
        imported_as = MODE_FACTS[mode].imported_as
        assert imported_as is not None
        assert "from_import" in vars(CREDENTIAL_SHAPES[imported_as]), mode


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"type": "OAUTH2", "refresh_token": "r"}, "invalid_credentials"),  # no access token
        ({"type": "BASIC"}, "invalid_credentials"),  # no user name
        ({"type": "TBA"}, "invalid_credentials"),  # no token: incomplete, as any other type's
    ],
)
def test_malformed_credentials_of_a_known_type_refuse_to_authorize(document: dict[str, Any], code: str) -> None:
    # The proxy answers 400 with this code rather than calling the provider without credentials.
    credentials = parse_credentials(document)
    assert isinstance(credentials, UnknownCredentials)
    with pytest.raises(UnusableCredentialsError) as raised:
        credentials.authorization()
    assert raised.value.code == code
    assert "r" not in raised.value.message.split()  # no stored value in the message

"""The ``Idempotency-Key`` header's syntax, and which routes take it."""

from __future__ import annotations

import pytest

from auth_gateway.http.errors import ApiError
from auth_gateway.http.idempotency.header import MAX_KEY_LENGTH, idempotent_routes, parse_idempotency_key
from auth_gateway.routes import ROUTES


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),  # the draft's form
        ('"say \\"hi\\" \\\\ bye"', 'say "hi" \\ bye'),
        ("  padded  ", "padded"),
        ("k" * MAX_KEY_LENGTH, "k" * MAX_KEY_LENGTH),
        ("with inner space", "with inner space"),
    ],
)
def test_keys_read_as_text_or_structured_strings(sent: str, key: str) -> None:
    assert parse_idempotency_key([sent]) == key


@pytest.mark.parametrize(
    "sent",
    [
        [""],
        ["   "],
        ['""'],
        ["k" * (MAX_KEY_LENGTH + 1)],
        ['"' + "k" * (MAX_KEY_LENGTH + 1) + '"'],
        ['"open'],
        ['"a"b'],
        ['"bad \\n escape"'],
        ["caf\u00e9"],
        ["tab\tinside"],
        ["one", "two"],
    ],
)
def test_bad_keys_are_a_400(sent: list[str]) -> None:
    with pytest.raises(ApiError) as caught:
        parse_idempotency_key(sent)
    assert (caught.value.status, caught.value.code) == (400, "invalid_idempotency_key")


def test_the_backend_writes_take_the_header_and_nothing_else_does() -> None:
    taking = idempotent_routes(ROUTES)
    for route in [
        ("POST", "/connection"),
        ("DELETE", "/connection/{connectionId}"),
        ("PATCH", "/connection/metadata"),
        ("POST", "/config"),
        ("DELETE", "/config/{providerConfigKey}"),
        ("POST", "/connect/sessions"),
        ("POST", "/environment/rotate-key"),
        ("PATCH", "/environment"),
    ]:
        assert route in taking, route
    for route in [
        ("GET", "/connection"),
        ("PUT", "/config"),  # idempotent by its method
        ("POST", "/proxy/{path}"),  # the upstream's call: Nango-Proxy-Idempotency-Key reaches it
        ("DELETE", "/proxy/{path}"),
        ("POST", "/api-auth/api-key/{providerConfigKey}"),  # the browser's connect routes
        ("DELETE", "/connect/session"),
    ]:
        assert route not in taking, route
    assert all(method in {"POST", "PATCH", "DELETE"} for method, _ in taking)
    secret = {(r.method, r.path) for r in ROUTES if r.auth == "secret_key"}
    assert taking <= secret

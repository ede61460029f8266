"""``body_text``, the dispatcher's fast serialisation of auth bodies, writes what ``js_stringify`` does."""

from __future__ import annotations

from typing import Any

import pytest

from keyway_shared.jsjson import js_stringify
from webhook_dispatcher.body import body_text

STRINGS = [
    "",
    "plain",
    "ünïcødé café",
    "emoji 🎉 and 日本語",
    'quote " backslash \\ slash /',
    "controls \x00 \x01 \x1f \x7f \b \f \n \r \t",
    "separators \u2028 \u2029",
    "lone \ud800 surrogate",
    "pair \U0001f600 fine",
    "<script>&amp;</script>",
]


@pytest.mark.parametrize("text", STRINGS)
def test_a_string_in_an_auth_body_is_written_as_javascript_would(text: str) -> None:
    body = {
        "from": "nango",
        "type": "auth",
        "connectionId": text,
        "success": False,
        "provider": None,
        "error": {"type": "oauth_error", "description": text},
    }
    assert body_text(body) == js_stringify(body)


@pytest.mark.parametrize(
    "body",
    [
        {"2": "a", "1": "b", "z": "c"},  # JavaScript lists integer-like keys first
        {"count": 3, "ratio": 1.0, "tiny": 1e-7},  # numbers are written JavaScript's way
        {"list": ["a", True, None]},
        {"nested": {"10": "x", "b": {"0": None}}},
    ],
)
def test_a_body_outside_the_fast_path_takes_the_general_one(body: dict[str, Any]) -> None:
    assert body_text(body) == js_stringify(body)

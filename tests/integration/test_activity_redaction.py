"""What the activity log keeps of an event is redacted, whatever the producer sent (no broker or database).

``keyway_shared.logging.redact`` skips its patterns on strings none of them can match; that
shortcut must never change what it answers.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from activity_log.entries import entry_for
from keyway_shared import logging as keyway_logging
from keyway_shared.activity import body_excerpt, redacted_text, redacted_url
from keyway_shared.events import ActivityMessage, AuthFailed, ErrorInfo, HttpExcerpt
from keyway_shared.logging import redact

from ..support.inproc import event

SECRET = "s3cr3t-VALUE-91x"

CORPUS: list[Any] = [
    "plain words only",
    f"Bearer {SECRET}",
    f"basic {SECRET}",
    f"https://h.example/cb?code={SECRET}&state=1",
    f'{{"access_token": "{SECRET}"}}',
    f"kw1:0123abcd:{SECRET}",
    f"whsec_{SECRET}",
    f"token={SECRET}",
    {"client_secret": SECRET, "nested": [{"refreshToken": SECRET, "ok": 1}], "note": f"password={SECRET}"},
    {"provider_config_key": "github", "apiKey": SECRET, "empty": "", "n": None, "flag": True, "x": 1.5},
    ["a", ("b", f"Bearer {SECRET}")],
    12,
    None,
]


@pytest.mark.parametrize("value", CORPUS)
def test_the_shortcut_never_changes_the_redaction(value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = redact(value)
    monkeypatch.setattr(keyway_logging, "_may_hold_secret", lambda _text: True)  # every pattern, every string
    assert fast == redact(value)


def test_urls_lose_their_secrets_and_keep_the_rest() -> None:
    url = f"https://user:{SECRET}@api.example.com/cb?code={SECRET}&oauth_verifier={SECRET}&state=abc&params[x]=1#at={SECRET}"
    cleaned = redacted_url(url)
    assert SECRET not in cleaned
    assert cleaned == (
        "https://[REDACTED]@api.example.com/cb?code=[REDACTED]&oauth_verifier=[REDACTED]&state=abc&params[x]=1"
        "#[REDACTED]"
    )
    assert SECRET not in redacted_text(f"Webhook to https://h.io/in?token={SECRET} failed")


def test_bodies_are_redacted_and_cut_to_4_kb() -> None:
    body = body_excerpt(json.dumps({"access_token": SECRET, "expires_in": 3600, "filler": "x" * 10_000}))
    assert body is not None
    assert SECRET not in body
    assert len(body.encode()) <= 4096
    assert body.startswith('{"access_token":"[REDACTED]","expires_in":3600')


def test_an_entry_keeps_nothing_secret_from_a_careless_producer() -> None:
    careless = event(
        "activity.message",
        ActivityMessage(
            operation_id="op",
            operation_type="auth:create_connection",
            message=f"Calling https://p.io/token?client_secret={SECRET} with Bearer {SECRET}",
            request=HttpExcerpt(
                method="post", url=f"https://p.io/token?code={SECRET}", body=f'{{"id_token":"{SECRET}"}}'
            ),
            meta={"headers": {"Authorization": f"Bearer {SECRET}"}, "apiKey": SECRET, "big": "y" * 20_000},
        ),
    )
    failed = event(
        "auth.failed", AuthFailed(operation_id="op2", error=ErrorInfo(type="token_err", description=f"code={SECRET}"))
    )
    for item in (careless, failed):
        entry = entry_for(item, retention=timedelta(days=15))
        stored = json.dumps([entry.message, entry.error, entry.words], default=str)
        assert SECRET not in stored
        assert SECRET.lower() not in stored
    meta = entry_for(careless, retention=timedelta(days=15)).message["meta"]
    assert list(meta) == ["truncated"]  # over 8 KB: kept as a cut excerpt

"""Connect links: the outcome signature (connect.link_outcome), return-URL matching (operations.return_urls)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from auth_gateway.connect.link_outcome import OutcomeError, outcome_url, verify_outcome
from auth_gateway.operations.return_urls import return_url_allowed

ALLOWED = ["https://app.example.com/integrations"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://app.example.com/integrations", True),
        ("https://app.example.com/integrations/done?x=1", True),
        ("https://APP.example.com:443/integrations/done", True),
        ("https://app.example.com/integrations-evil", False),
        ("https://app.example.com/integrations/../admin", False),
        ("http://app.example.com/integrations", False),
        ("https://app.example.com.evil.io/integrations", False),
        ("https://user@app.example.com/integrations", False),
        ("https://app.example.com/integrations#frag", False),
        ("javascript:alert(1)", False),
    ],
)
def test_return_url_matching(url: str, ok: bool) -> None:
    assert return_url_allowed(url, ALLOWED) is ok


def test_signed_outcome_round_trip_and_tampering() -> None:
    url = outcome_url(
        "https://app.example.com/integrations/done?tab=a b&x=é",
        {"status": "success", "connection_id": "c/1", "provider_config_key": "gh"},
        "secret",
        now=1_000,
    )
    query = urlsplit(url).query
    params = verify_outcome(query, "secret", now=1_010)
    assert params["tab"] == "a b"
    assert params["x"] == "é"
    assert params["connection_id"] == "c/1"
    for bad in (query.replace("c%2F1", "c%2F2"), query + "&extra=1", query.replace("tab=a", "tab=b")):
        with pytest.raises(OutcomeError):
            verify_outcome(bad, "secret", now=1_010)
    with pytest.raises(OutcomeError):
        verify_outcome(query, "secret", now=2_000)

"""``redact_url``: a URL for a log line keeps where it points and loses the secrets it carries."""

from __future__ import annotations

import pytest

from keyway_shared.logging import REDACTED, redact, redact_url

R = REDACTED


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/in", "https://hooks.example.com/in"),
        ("https://u:p4ss@hooks.example.com/in", f"https://{R}@hooks.example.com/in"),
        ("https://only-user@hooks.example.com/in", f"https://{R}@hooks.example.com/in"),
        ("https://h.example/in?token=t1&tenant=acme", f"https://h.example/in?token={R}&tenant=acme"),
        ("https://h.example/in?sig=s&se=2030&sv=2022", f"https://h.example/in?sig={R}&se=2030&sv=2022"),
        (
            "https://h.example/in?X-Amz-Signature=a&X-Amz-Date=d",
            f"https://h.example/in?X-Amz-Signature={R}&X-Amz-Date=d",
        ),
        (
            "https://h.example/in?apiKey=k&access_token=a&code=c",
            f"https://h.example/in?apiKey={R}&access_token={R}&code={R}",
        ),
        ("https://h.example/in?provider_config_key=ph&flag", "https://h.example/in?provider_config_key=ph&flag"),
        ("https://h.example/cb#access_token=a&state=s", f"https://h.example/cb#access_token={R}&state=s"),
        ("http://[::1/in?token=t", f"http://[::1/in?{R}"),  # unparsable: the whole query goes
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_log_processor_masks_userinfo_in_any_text() -> None:
    assert redact("POST https://u:pw@h.example/in failed") == f"POST https://{R}@h.example/in failed"

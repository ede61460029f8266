"""Whatever text a caller presents as a secret, comparing it answers yes or no, never raises."""

from __future__ import annotations

import pytest

from keyway_shared.compare import secrets_equal
from keyway_shared.webhook_signing import nango_signature, verify_nango_hmac, verify_nango_signature

PRESENTED = ["M±EÒv", "\ud800", "ü" * 64, "", "\x00"]


@pytest.mark.parametrize("presented", PRESENTED)
def test_any_presented_text_is_just_unequal(presented: str) -> None:
    assert secrets_equal("6b0f" * 16, presented) is False


def test_equal_texts_are_equal() -> None:
    assert secrets_equal("clé-ü", "clé-ü")


@pytest.mark.parametrize("presented", PRESENTED)
def test_webhook_signature_checks_refuse_non_ascii_signatures(presented: str) -> None:
    assert verify_nango_signature("secret", b"{}", presented) is False
    assert verify_nango_hmac("secret", b"{}", presented) is False
    assert verify_nango_signature("secret", b"{}", nango_signature("secret", b"{}"))

"""Comparing a secret with what a caller presented, in constant time and for any text the caller sends.

``hmac.compare_digest`` on two ``str`` raises ``TypeError`` as soon as one holds a non-ASCII
character, so a caller's ``hmac=M±E`` would become a 500; comparing UTF-8 bytes answers ``False``.
"""

from __future__ import annotations

import hmac

__all__ = ["secrets_equal"]


def secrets_equal(expected: str, presented: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), presented.encode("utf-8", "surrogatepass"))

"""The provider file every gateway started by the tests loads first (see providers.test.yaml)."""

from __future__ import annotations

from pathlib import Path

TEST_PROVIDERS = Path(__file__).with_name("providers.test.yaml")


def providers_file(extra: str | None = None) -> str:
    """``KEYWAY_PROVIDERS_FILE`` for a test: the test overrides first, then the test's own file."""
    return ",".join(str(p) for p in (TEST_PROVIDERS, extra) if p)

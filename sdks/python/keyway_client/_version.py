"""The package version, and the User-Agent every request carries."""

from __future__ import annotations

import platform

__all__ = ["USER_AGENT", "VERSION"]

VERSION = "0.1.0"
USER_AGENT = f"keyway-client-python/{VERSION} (python/{platform.python_version()})"

"""The one error of reading a Nango database (its own module: the readers of each part raise it)."""

from __future__ import annotations

__all__ = ["NangoError"]


class NangoError(Exception):
    """The Nango database cannot be read as expected, or a value cannot be decrypted."""

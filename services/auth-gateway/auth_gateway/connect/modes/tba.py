"""TBA: NetSuite token-based auth. No browser flow yet: its connections are imported
(``POST /connection``, ``TbaCredentials.from_import``) and used through the SDK."""

from __future__ import annotations

from .spec import AuthModeSpec

__all__ = ["SPEC"]

SPEC = AuthModeSpec(mode="TBA", flow=None)

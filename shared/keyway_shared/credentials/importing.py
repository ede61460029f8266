"""Reading the body of ``POST /connection`` (spec §3.3), the import of credentials obtained elsewhere.

Each credentials class reads its own fields (``from_import`` in :mod:`.shapes`) through ``ImportBody``;
what the body lacks or gets wrong is an ``ImportRefusedError`` whose code is the API's error type.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..providers.template import ProviderTemplate

__all__ = ["ImportBody", "ImportRefusedError"]


class ImportRefusedError(Exception):
    """The body does not make credentials of this type; ``code`` is the API's error type."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ImportBody:
    """The fields of an import's body, read as Nango reads them: an empty string is no value."""

    def __init__(
        self,
        body: Mapping[str, Any],
        *,
        connection_config: Mapping[str, Any],
        now: datetime,
        template: ProviderTemplate | None = None,
    ) -> None:
        self.body = body
        self.connection_config = connection_config  # as it will be stored
        self.now = now
        self.template = template  # the integration's, for credentials made as it declares (JWT, WSSE)

    def declared_by(self) -> ProviderTemplate:
        """The template, which credentials Keyway makes itself need; refused when the caller has none."""
        if self.template is None or self.template.token is None:
            raise ImportRefusedError("invalid_provider_template", "The provider template declares no token.")
        return self.template

    def optional(self, name: str) -> str | None:
        value = self.body.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ImportRefusedError("invalid_body", f"'{name}' must be a string.")
        return value

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ImportRefusedError(f"missing_{name}", f"Missing param '{name}'.")
        return value

    def raw(self) -> dict[str, Any] | None:
        raw = self.body.get("raw")
        return raw if isinstance(raw, dict) else None

    def expiry(self) -> datetime | None:
        """``expires_at`` (a date or unix seconds), else ``expires_in``; None for ``no_expiration``."""
        body = self.body
        if body.get("no_expiration") is True:
            return None
        if body.get("expires_at") not in (None, ""):
            value = body["expires_at"]
            try:
                if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
                    return datetime.fromtimestamp(float(value), UTC)
                parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except (ValueError, OverflowError, OSError):
                raise ImportRefusedError("invalid_expires_at", "'expires_at' must be a date or unix seconds.") from None
        if body.get("expires_in") not in (None, ""):
            try:
                return self.now + timedelta(seconds=int(body["expires_in"]))
            except (TypeError, ValueError):
                raise ImportRefusedError("invalid_expires_at", "'expires_in' must be a number of seconds.") from None
        raise ImportRefusedError("missing_expires_at", "Give 'expires_at' or 'expires_in', or 'no_expiration': true.")

"""The token refresher's settings: the shared ones plus its port and the refresh margin."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from keyway_shared.settings import BaseServiceSettings

__all__ = ["RefresherSettings"]


class RefresherSettings(BaseServiceSettings):
    host: str = Field(default="0.0.0.0", validation_alias=AliasChoices("KEYWAY_HOST", "host"))  # noqa: S104 - a server
    port: int = Field(
        default=3030, ge=1, le=65535, validation_alias=AliasChoices("KEYWAY_TOKEN_REFRESHER_PORT", "port")
    )
    refresh_margin_seconds: float = Field(
        default=900.0,
        gt=0,
        description="refresh this long before a credential expires (half the lifetime for short-lived ones)",
        validation_alias=AliasChoices("KEYWAY_REFRESH_MARGIN_SECONDS", "refresh_margin_seconds"),
    )

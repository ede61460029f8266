"""A connect flow that cannot go on: the WebSocket ``error_type`` the SDK expects, and why."""

from __future__ import annotations

__all__ = ["FlowError"]


class FlowError(Exception):
    """``ws_type`` is one of the SDK's error types (spec §2.4): provider_config_err, url_param_err, …"""

    def __init__(self, ws_type: str, message: str) -> None:
        super().__init__(message)
        self.ws_type = ws_type
        self.message = message

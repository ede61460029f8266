"""APP: a GitHub App installation (spec §2.4, §5.9); the flow is in ``github_app``."""

from __future__ import annotations

from .github_app import finish_app, start_app
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC"]

SPEC = AuthModeSpec(mode="APP", flow=PopupFlow(start=start_app, finish=finish_app))

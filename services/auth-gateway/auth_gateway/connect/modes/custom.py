"""CUSTOM: github-app-oauth, an installation with the user's authorization (spec §2.4, §5.9); the flow
is in ``github_app``."""

from __future__ import annotations

from .github_app import finish_custom, start_app
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC"]

SPEC = AuthModeSpec(mode="CUSTOM", flow=PopupFlow(start=start_app, finish=finish_custom))

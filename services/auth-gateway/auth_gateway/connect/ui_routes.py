"""The Connect UI's lines of the route table (``auth_gateway.routes`` splices them in beside
``CONNECT_ROUTES``): the page Nango's frontend SDK frames, its two assets, and the one call the page
makes that no SDK route answers (``connect/session_integrations.py``)."""

from __future__ import annotations

from ..openapi_spec import Answer, Route, json_answer, page
from . import session_integrations, ui

__all__ = ["CONNECT_UI_ROUTES"]

SCRIPT, STYLES = Answer(200, "text/javascript"), Answer(200, "text/css")
SESSION_INTEGRATIONS = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["unique_key", "provider", "display_name", "auth_mode", "flow", "fields", "params"],
                "properties": {
                    "unique_key": {"type": "string"},
                    "provider": {"type": "string"},
                    "display_name": {"type": "string"},
                    "auth_mode": {"type": "string"},
                    "flow": {"enum": ["popup", "form", "none", None]},
                    "fields": {"type": "array", "items": {"type": "object"}},
                    "params": {"type": "array", "items": {"type": "object"}},
                    "form_path": {"type": ["string", "null"]},
                },
            },
        }
    },
}

CONNECT_UI_ROUTES: list[Route] = [
    Route(
        "GET",
        "/connect-ui/",
        ui.connect_ui_page,
        "The Connect UI (nango.openConnectUI's iframe; the session token comes by postMessage)",
        "connect",
        "none",
        ok=page(),
    ),
    Route(
        "GET",
        "/connect-ui/connect-ui.js",
        ui.connect_ui_script,
        "The Connect UI's script",
        "connect",
        "none",
        ok=SCRIPT,
    ),
    Route(
        "GET",
        "/connect-ui/connect-ui.css",
        ui.connect_ui_style,
        "The Connect UI's styles",
        "connect",
        "none",
        ok=STYLES,
    ),
    Route(
        "GET",
        "/connect/session/integrations",
        session_integrations.list_session_integrations,
        "The integrations a connect session allows, with how each is connected (for the Connect UI)",
        "connect-sessions",
        "connect_session",
        ok=json_answer(schema=SESSION_INTEGRATIONS),
    ),
]

"""The Connect UI: Keyway's own page behind ``nango.openConnectUI({ baseURL: "<gateway>/connect-ui", … })``.

Nango's frontend SDK (0.71) puts ``<baseURL>/`` in a full-window iframe (``apiURL``,
``detectClosedAuthWindow``, ``lang`` and ``theme`` in its query) and talks to it by ``postMessage``: the
page says ``ready``, the SDK answers ``session_token``, and the page reports ``connect`` (the
connection made), ``error`` and ``close``, which the SDK hands to the app's ``onEvent`` (``close`` also
removes the iframe). The page itself is static (``ui_static/``: one HTML, one script, one stylesheet,
nothing from elsewhere); with the token it calls the gateway's connect routes, as the SDK would.

Who may frame it: every app embeds it from its own origin, which the gateway cannot know, so any origin
may, as any page may open the SDK's WebSocket, unless ``KEYWAY_WEBSOCKET_ALLOWED_ORIGINS`` names the
apps' origins: then only they (and the gateway itself) may. Framing gives nothing without a session
token, which only the app's backend can mint and which the page takes from its parent alone.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

from ..openapi_spec import no_credential
from ..resources import SETTINGS

__all__ = ["connect_ui_page", "connect_ui_script", "connect_ui_style"]

_ASSETS = Path(__file__).resolve().with_name("ui_static")


@cache
def _asset(name: str) -> bytes:
    return (_ASSETS / name).read_bytes()


def _frame_ancestors(request: web.Request) -> str:
    allowed = request.app[SETTINGS].websocket_allowed_origins
    return " ".join(["'self'", *allowed]) if allowed else "*"


def _page_headers(request: web.Request) -> dict[str, str]:
    own_ws = ("wss://" if request.secure else "ws://") + request.host  # the popup flows' WebSocket
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {own_ws}; frame-ancestors {_frame_ancestors(request)}; "
            "form-action 'none'; base-uri 'none'; object-src 'none'"
        ),
        "Cache-Control": "no-store",
        # A tab opened on a connect link may carry the session token in its query: never sent elsewhere.
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


@no_credential  # the page is static; it takes the session token from its parent (or its own query)
async def connect_ui_page(request: web.Request) -> web.Response:
    """``GET /connect-ui/``: the page the SDK's iframe opens (the SDK always ends its path with ``/``, where
    the page's relative links resolve)."""
    return web.Response(
        body=_asset("index.html"), content_type="text/html", charset="utf-8", headers=_page_headers(request)
    )


def _static(name: str, content_type: str) -> web.Response:
    response = web.Response(body=_asset(name), content_type=content_type, charset="utf-8")
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@no_credential
async def connect_ui_script(_request: web.Request) -> web.Response:
    return _static("connect-ui.js", "text/javascript")


@no_credential
async def connect_ui_style(_request: web.Request) -> web.Response:
    return _static("connect-ui.css", "text/css")

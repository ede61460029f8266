"""The HTML the popup shows at the end of a flow (spec §2.4, step 7).

With a ``ws_client_id`` the page only closes itself: the result travels over the WebSocket. Without
one (legacy SDKs) it posts the result to ``window.opener`` first, with Nango's own event names —
misspelling of ``AUTHORIZATION_SUCEEDED`` included, because that is what those SDKs listen for.
"""

from __future__ import annotations

import html
import json

from aiohttp import web

__all__ = ["error_page", "plain_error_page", "success_page"]

_CLOSE_SCRIPT = "setTimeout(function () { window.close(); }, 300);"


def _page(title: str, text: str, script: str, status: int) -> web.Response:
    body = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<p>{html.escape(text)}</p><script>{script}</script></body></html>"
    )
    return web.Response(
        status=status,
        body=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _json_for_script(value: object) -> str:
    # Safe inside <script>: no closing tag or HTML comment can be formed from the payload.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def success_page(*, legacy: bool, provider_config_key: str, connection_id: str) -> web.Response:
    script = _CLOSE_SCRIPT
    if legacy:
        message = {
            "eventType": "AUTHORIZATION_SUCEEDED",
            "data": {"connectionId": connection_id, "providerConfigKey": provider_config_key},
        }
        script = f"if (window.opener) {{ window.opener.postMessage({_json_for_script(message)}, '*'); }}" + script
    return _page("Authorization succeeded", "Authorization succeeded. You can close this window.", script, 200)


def error_page(*, legacy: bool, error_type: str, message: str, status: int) -> web.Response:
    """``status``: 4xx when the request (or the integration's setup) is at fault, 5xx when the provider
    or the gateway is; the SDK reads the WebSocket frame or the postMessage, never the status."""
    script = _CLOSE_SCRIPT
    if legacy:
        payload = {"eventType": "AUTHORIZATION_FAILED", "data": {"error": {"type": error_type, "message": message}}}
        script = f"if (window.opener) {{ window.opener.postMessage({_json_for_script(payload)}, '*'); }}" + script
    return _page("Authorization failed", f"Authorization failed: {message}", script, status)


def plain_error_page(message: str, *, status: int = 400) -> web.Response:
    """For a callback we cannot tie to any flow (unknown state): say so, never hang."""
    return _page("Authorization failed", message, "", status)

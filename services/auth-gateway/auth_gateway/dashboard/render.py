"""Rendering pages: Jinja2 with autoescaping on, and the headers every dashboard answer carries.

Jinja2 escapes every value by default, which matters here: connection ids, metadata and provider
answers shown on these pages come from customers and providers, not from us.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from keyway_shared.events import utcnow

from ..resources import SETTINGS

if TYPE_CHECKING:
    import jinja2

__all__ = ["TEMPLATES_DIR", "harden", "render", "template_environment"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.isoformat()


def _ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = int((utcnow() - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = f"{seconds // size} {unit}"
            break
    else:
        amount = f"{seconds} s"
    return f"in {amount}" if future else f"{amount} ago"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def template_environment() -> jinja2.Environment:
    import jinja2  # here, not at import: a gateway whose dashboard is off never loads it (idle memory)

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt variable fails the page, not renders blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["iso"] = _iso
    env.filters["ago"] = _ago
    env.filters["pretty"] = _pretty
    return env


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def harden(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
    """No inline script or style, no framing, nothing cached: these pages show secrets.

    Connect talks to the gateway's public side (``KEYWAY_PUBLIC_URL``), which is another origin when
    the dashboard is served on the admin port: that origin, and its WebSocket, may be reached too.
    """
    own_ws = ("wss://" if request.secure else "ws://") + request.host
    public = _origin(request.app[SETTINGS].public_url)
    public_ws = public.replace("http", "ws", 1) if public else ""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {own_ws} {public} {public_ws}; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def render(
    templates: jinja2.Environment, request: web.Request, name: str, *, status: int = 200, **values: Any
) -> web.Response:
    body = templates.get_template(name).render(**values)
    response = web.Response(status=status, text=body, content_type="text/html", charset="utf-8")
    harden(response, request)
    return response

"""The dashboard's stylesheet and scripts, and ``/sdk/keyway-connect.js`` for any app to load."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ...openapi_spec import no_credential

__all__ = ["STATIC_DIR", "connect_script", "static_file"]

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
# Only the files that ship: a name from the URL is looked up here, never joined onto a path.
_FILES = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in _TYPES}


def _serve(path: Path, *, max_age: int) -> web.Response:
    response = web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix], charset="utf-8")
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@no_credential
async def static_file(request: web.Request) -> web.StreamResponse:
    path = _FILES.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return _serve(path, max_age=300)


@no_credential
async def connect_script(_request: web.Request) -> web.StreamResponse:
    """A stable path apps can put in a ``<script>`` tag: short caching, so fixes reach pages soon."""
    return _serve(_FILES["keyway-connect.js"], max_age=300)

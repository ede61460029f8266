"""The route table: a new route is a view plus one line in its feature's table, spliced in here.

``connect/routes.py`` (what a browser or a frontend SDK calls), ``api/routes.py`` (the secret-key
backend API), ``proxy/routes.py`` and ``dashboard/routes.py`` each declare their lines; ``ROUTES``
is the one table they make. Each line also documents its route; ``openapi.py`` builds
``/openapi.json`` from this same table, so the document cannot miss a route or describe one that
does not exist. Beyond method, path, view, summary, tag and credential, a line names only what
differs from the defaults (``openapi_spec.py``): its query and header parameters, its body (the
pydantic model its view validates with, or a schema from ``openapi_schemas.py``), its answer when
not 200 JSON, and the errors its view adds to those of its credential and its body.
"""

from __future__ import annotations

from aiohttp import web

from .api.routes import API_ROUTES
from .connect.routes import CONNECT_ROUTES
from .connect.ui_routes import CONNECT_UI_ROUTES
from .dashboard.routes import DASHBOARD_ROUTES
from .openapi_spec import Route
from .proxy.routes import PROXY_ROUTES

__all__ = ["ROUTES", "add_routes"]

ROUTES: list[Route] = CONNECT_ROUTES + CONNECT_UI_ROUTES + API_ROUTES + PROXY_ROUTES + DASHBOARD_ROUTES


def add_routes(app: web.Application) -> None:
    app.router.add_routes([web.route(r.method, r.path, r.handler) for r in ROUTES])

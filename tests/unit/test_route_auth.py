"""The route table's auth column is what each view's wrapper checks, by construction.

A view is wrapped in the decorator of its credential (``@secret_key``, ``@public_key``,
``@connect_session``, the dashboard's ``@page``, or ``@no_credential``), which marks it; a line
whose column differs from its view's mark cannot be built. Only the wrappers look a key up, so a
view cannot reach an environment another way. What each credential answers over HTTP is
``tests/integration/test_route_auth.py``.
"""

from __future__ import annotations

import ast
from typing import get_args

import pytest
from aiohttp import web

from auth_gateway.openapi_spec import AuthKind, Route, declare_auth, declared_auth, no_credential
from auth_gateway.operations.callers import secret_key
from auth_gateway.routes import ROUTES
from keyway_shared.store import Environment

from .test_import_cycles import PACKAGES, modules_of

# The only modules that look a caller's key up: the wrappers' own.
LOOKUPS = {"environment_from_secret_key", "environment_from_public_key"}
LOOKING_UP = {"auth_gateway.operations.callers", "auth_gateway.connect.frontend_request"}


async def bare_view(_request: web.Request) -> web.Response:
    return web.Response()


async def backend_view(_request: web.Request, _env: Environment) -> web.Response:
    return web.Response()


def test_every_line_of_the_table_is_checked_by_its_views_wrapper() -> None:
    assert len(ROUTES) > 80
    for route in ROUTES:
        assert declared_auth(route.handler) == route.auth, (route.method, route.path)
    assert {route.auth for route in ROUTES} == set(get_args(AuthKind))  # every kind is in use


def test_a_line_with_an_unwrapped_view_is_refused() -> None:
    with pytest.raises(TypeError, match=r"GET /x: the line's auth is 'none', but its view bare_view checks None"):
        Route("GET", "/x", bare_view, "X", "test", "none")


def test_a_line_whose_column_is_not_its_views_credential_is_refused() -> None:
    view = secret_key(backend_view)
    assert declared_auth(view) == "secret_key"
    with pytest.raises(TypeError, match=r"auth is 'public_key', but its view backend_view checks 'secret_key'"):
        Route("POST", "/x", view, "X", "test", "public_key")
    assert Route("POST", "/x", view, "X", "test", "secret_key").handler is view


def test_a_view_has_one_credential() -> None:
    async def anyone(_request: web.Request) -> web.Response:
        return web.Response()

    marked = no_credential(anyone)
    with pytest.raises(TypeError, match="already checks the credential 'none'"):
        declare_auth("secret_key", marked)
    with pytest.raises(TypeError, match="already checks the credential 'secret_key'"):
        secret_key(secret_key(backend_view))  # type: ignore[arg-type]


def _named(node: ast.AST) -> str | None:
    """The name a node imports, reads or calls, if any."""
    match node:
        case ast.alias(name=name) | ast.Name(id=name) | ast.Attribute(attr=name):
            return str(name)
    return None


def test_only_the_wrappers_look_a_key_up() -> None:
    """A view that looked its environment up itself could skip the check, or run the wrong one."""
    calling: dict[str, set[str]] = {}
    for module, path in modules_of(PACKAGES["auth_gateway"]).items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if _named(node) in LOOKUPS:
                calling.setdefault(module, set()).add(str(_named(node)))
    assert set(calling) == LOOKING_UP, calling

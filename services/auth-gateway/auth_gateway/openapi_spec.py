"""A route's line in the table, and the OpenAPI 3.1 document built from the table."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["Route", "build_document"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: str  # public_key | secret_key | connect_session | dashboard_session | none


_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "secret_key": [{"secretKey": []}],
    "public_key": [{"publicKey": []}, {"connectSession": []}],
    "connect_session": [{"connectSessionBearer": []}],
    "dashboard_session": [{"dashboardSession": []}],
    "none": [],
}
# Routes every service answers (keyway_shared.service.add_health_routes), documented beside the table.
_OPERATIONAL = [
    ("GET", "/healthz", "Alive"),
    ("GET", "/readyz", "Broker and database reachable (503 otherwise)"),
    ("GET", "/metrics", "Prometheus metrics"),
    ("GET", "/openapi.json", "This document"),
]
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Both Nango SDK generations read it: error.code/error.message, and the top-level type.",
    "required": ["error", "type"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "payload": {},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        },
        "type": {"type": "string"},
    },
}


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path).strip("/").replace("-", "_").replace("/", "_") or "root"
    return f"{method.lower()}_{words}"


def _operation(route: Route) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{([^}:]+)(?::[^}]*)?\}", route.path)
    ]
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.method, route.path),
        "summary": route.summary,
        "tags": [route.tag],
        "security": _SECURITY[route.auth],
        "responses": {
            "200": {"description": "Success"},
            "4XX": {
                "description": "Bad input",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if params:
        operation["parameters"] = params
    if route.method in {"POST", "PUT", "PATCH"}:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
    return operation


def build_document(routes: Sequence[Route], *, version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        openapi_path = re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", route.path)
        paths.setdefault(openapi_path, {})[route.method.lower()] = _operation(route)
    for method, path, summary in _OPERATIONAL:
        paths.setdefault(path, {})[method.lower()] = {
            "operationId": _operation_id(method, path),
            "summary": summary,
            "tags": ["operations"],
            "security": [],
            "responses": {"200": {"description": "Success"}},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Keyway gateway",
            "version": version,
            "description": "Nango-compatible connect and backend API; errors use components.schemas.Error.",
        },
        "servers": [{"url": "http://127.0.0.1:3003"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "secretKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The environment's secret key (UUID v4)",
                },
                "publicKey": {"type": "apiKey", "in": "query", "name": "public_key"},
                "connectSession": {"type": "apiKey", "in": "query", "name": "connect_session_token"},
                "connectSessionBearer": {"type": "http", "scheme": "bearer", "description": "A connect session token"},
                "dashboardSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "keyway_dashboard",
                    "description": "A dashboard sign-in (HTML forms; each POST also needs the session's CSRF token)",
                },
            },
            "schemas": {"Error": _ERROR_SCHEMA},
        },
    }

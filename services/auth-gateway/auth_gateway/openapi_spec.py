"""A route's line in the table, and the OpenAPI 3.1 document built from the table.

A line names its method, path, view, summary, tag and credential. What a caller may send (query and
header parameters, a body) and what comes back are keywords whose defaults fit most lines, so that a
new route stays one short line:

- the credential brings its errors: a secret-key route answers 401 and 429 without saying so, a
  public-key route also 400 (missing connection id, HMAC) and 403 (an integration its connect
  session does not allow);
- a body brings 400 (not JSON, or not the schema) and 413;
- a backend write (a secret-key POST, PATCH or DELETE, but the proxy's) takes the ``Idempotency-Key``
  header and brings its 400, 409 and 422 (``http/idempotency/``, which reads the same property);
- the answer is 200 with JSON unless ``ok`` says otherwise;
- ``errors`` lists the other statuses the view itself answers, in the protocol's envelope
  (``components.schemas.Error``), or as HTML pages on a route a browser tab opens (``pages=True``).

A body is a pydantic model (the one the view validates with, so the document cannot drift from it)
or a JSON schema written beside the line where the view reads the JSON itself.

The credential column is enforced, not only documented: a view is wrapped in the decorator of its
credential (``operations/callers.py``'s ``@secret_key``, ``connect/frontend_request.py``'s
``@public_key``, ``connect/sessions.py``'s ``@connect_session``, the dashboard's ``@page``, or
``@no_credential`` here), which checks it before the view runs and marks the view with it; a line
whose column is not its view's mark fails when the table is built.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

__all__ = [
    "ERROR_REF",
    "NO_CONTENT",
    "Answer",
    "AuthKind",
    "Body",
    "Handler",
    "Param",
    "Route",
    "bracketed",
    "build_document",
    "declare_auth",
    "declared_auth",
    "form",
    "header",
    "json_answer",
    "no_credential",
    "page",
    "query",
    "redirect",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AuthKind = Literal[
    "secret_key", "secret_key_or_connect_session", "public_key", "connect_session", "dashboard_session", "none"
]
JsonSchema = Mapping[str, Any]
Schema = JsonSchema | type[BaseModel]

JSON, HTML = "application/json", "text/html"
STRING: JsonSchema = MappingProxyType({"type": "string"})
ERROR_REF: JsonSchema = MappingProxyType({"$ref": "#/components/schemas/Error"})


@dataclass(frozen=True)
class Param:
    """A query or header parameter."""

    name: str
    location: str  # query | header
    required: bool = False
    schema: JsonSchema | None = None  # None: a string
    description: str = ""
    style: str | None = None  # deepObject: ``params[subdomain]=acme``


def query(name: str, description: str = "", *, required: bool = False, **schema: Any) -> Param:
    """A query parameter; ``schema`` keywords (``type="integer"``, ``minimum=1`` …) replace the string default."""
    return Param(name, "query", required, schema or None, description)


def header(name: str, description: str = "", *, required: bool = False, **schema: Any) -> Param:
    return Param(name, "header", required, schema or None, description)


def bracketed(name: str, description: str) -> Param:
    """``name[key]=value`` query keys, read as one object of strings (Express's qs style, as the SDKs send it)."""
    schema = {"type": "object", "additionalProperties": dict(STRING)}
    return Param(name, "query", False, MappingProxyType(schema), description, "deepObject")


@dataclass(frozen=True)
class Body:
    schema: Schema
    required: bool = True
    media_type: str = JSON


def form(schema: JsonSchema) -> Body:
    """An HTML form post (``application/x-www-form-urlencoded``); an empty form is a form without fields."""
    return Body(schema, required=False, media_type="application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Answer:
    status: int | str  # or "default": whatever another server answered (the proxy)
    media_type: str | None = JSON  # None: no body
    schema: Schema | None = None
    description: str = ""
    location: bool = False  # a redirect's Location header


def json_answer(status: int = 200, schema: Schema | None = None, description: str = "") -> Answer:
    return Answer(status, JSON, schema, description)


def page(status: int = 200, description: str = "") -> Answer:
    """An HTML page."""
    return Answer(status, HTML, None, description)


def redirect(status: int = 302, description: str = "") -> Answer:
    return Answer(status, None, None, description, location=True)


OK = json_answer()
NO_CONTENT = Answer(204, None)

# Set on the view's handler by the wrapper that checks its credential. An attribute, not a table:
# ``functools.wraps`` copies it onto an outer wrapper, so a view wrapped twice is caught below.
_AUTH_MARK = "__route_auth__"


def declare_auth(kind: AuthKind, handler: Handler) -> Handler:
    """Mark ``handler`` as checking the credential ``kind``: the wrapper that checks it calls this."""
    if (already := declared_auth(handler)) is not None:
        raise TypeError(f"{handler.__qualname__} already checks the credential {already!r}: one wrapper a view")
    setattr(handler, _AUTH_MARK, kind)
    return handler


def declared_auth(handler: Handler) -> str | None:
    """The credential ``handler``'s wrapper checks, or None: a function no wrapper made a route's view."""
    mark = getattr(handler, _AUTH_MARK, None)
    return mark if isinstance(mark, str) else None


def no_credential(view: Handler) -> Handler:
    """The view of an ``auth="none"`` route: it takes no key or session, and says so.

    What such a view does check is its own (a flow's state and browser, a link's token, a sign-in form).
    """
    return declare_auth("none", view)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: AuthKind  # what the view's wrapper checks (declare_auth); public_key also takes a connect session token
    params: Sequence[Param] = ()
    body: Schema | Body | None = None  # a model or a schema: a required JSON body
    ok: Answer | Sequence[Answer] | None = None  # None: 200 JSON (a dashboard page: 200 HTML or 303)
    errors: Sequence[int | Answer] = ()  # beyond those of the credential and the body
    pages: bool = False  # errors are HTML pages: a browser tab opened the route, not an SDK

    def __post_init__(self) -> None:
        declared = declared_auth(self.handler)
        if declared != self.auth:
            raise TypeError(
                f"{self.method} {self.path}: the line's auth is {self.auth!r}, but its view "
                f"{self.handler.__qualname__} checks {declared!r}: wrap the view in the decorator of its credential"
            )

    @property
    def takes_idempotency_key(self) -> bool:
        return self.auth == "secret_key" and self.method in _KEYED_METHODS and not self.path.startswith("/proxy/")


_SECURITY: dict[AuthKind, list[dict[str, list[str]]]] = {
    "secret_key": [{"secretKey": []}],
    "secret_key_or_connect_session": [{"secretKey": []}, {"connectSessionBearer": []}],
    "public_key": [{"publicKey": []}, {"connectSession": []}],
    "connect_session": [{"connectSessionBearer": []}],
    "dashboard_session": [{"dashboardSession": []}],
    "none": [],
}
# What every route of a credential may answer before its view runs (operations/callers.py,
# connect/frontend_request.py, http/ratelimit.py, dashboard/pages.py): a bad or unknown credential,
# a rate limit, a session that does not allow the integration.
# 429 on a browser route (public key, connect session, none) is also its caller's address over its budget,
# always in the envelope: the rate-limit middleware answers before any view (/health is spared, the dashboard too).
_CREDENTIAL_ERRORS: dict[AuthKind, tuple[int | Answer, ...]] = {
    "secret_key": (401, 429),
    "secret_key_or_connect_session": (401, 429),
    "public_key": (400, 401, 403, 429, json_answer(429, ERROR_REF)),
    "connect_session": (401, 429),
    "dashboard_session": (redirect(303, "Not signed in: to the sign-in form"), page(403), page(404)),
    "none": (json_answer(429, ERROR_REF),),
}
_KEYED_METHODS = frozenset({"POST", "PATCH", "DELETE"})
_IDEMPOTENCY_KEY = header(
    "Idempotency-Key",
    "A unique key (1 to 255 printable ASCII characters) per operation, sent again with its retries: for "
    "24 h a retry gets the first answer (below 500) again, with Idempotent-Replayed: true",
    minLength=1,
    maxLength=255,
)
_IDEMPOTENCY_ERRORS = (
    json_answer(400, ERROR_REF, "invalid_idempotency_key, or the request's own"),
    json_answer(409, ERROR_REF, "idempotency_key_in_use: a request with this key is still being answered"),
    json_answer(422, ERROR_REF, "idempotency_key_mismatch: this key was used with another request"),
)
_DEFAULT_OK: dict[AuthKind, Sequence[Answer]] = {"dashboard_session": (page(), redirect(303, "Done: to the next page"))}
# A JSON body that does not arrive in time (KEYWAY_HTTP_BODY_TIMEOUT_SECONDS, http/requests.py).
_BODY_ERRORS = (400, 408, 413)
# Any route may find the database or the broker away: 503 with Retry-After within the request's
# deadline (http/deadlines.py, http/load_shedding.py, http/errors.py), never a 500.
_UNAVAILABLE = json_answer(503, ERROR_REF, "service_unavailable: the database or the broker is away, or busy")
# A request line or header past aiohttp's 8190 bytes is refused by its HTTP parser, before the application.
_TOO_LONG = Answer(400, "text/plain", description="Bad request, or a request line or header too long to read")
# Routes every service answers (keyway_shared.service.add_health_routes), documented beside the table.
_OPERATIONAL: list[tuple[str, str, str, Sequence[Answer]]] = [
    ("GET", "/healthz", "Alive", [json_answer()]),
    (
        "GET",
        "/readyz",
        "Broker and database reachable (503 otherwise)",
        [json_answer(), json_answer(503, description="The broker or the database is not reachable")],
    ),
    ("GET", "/metrics", "Prometheus metrics", [Answer(200, "text/plain")]),
    ("GET", "/openapi.json", "This document", [json_answer(schema={"type": "object"})]),
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
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "string"}}}


class _Components:
    """The document's ``components.schemas``: the error envelope and every model a line names."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}

    def schema(self, schema: Schema) -> dict[str, Any]:
        if isinstance(schema, Mapping):
            return dict(schema)
        generated = schema.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in {**generated.pop("$defs", {}), schema.__name__: generated}.items():
            if self.schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name}: rename one of the models")
        return {"$ref": f"#/components/schemas/{schema.__name__}"}


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path).strip("/").replace("-", "_").replace("/", "_") or "root"
    return f"{method.lower()}_{words}"


def _answer(answer: Answer, components: _Components) -> dict[str, Any]:
    phrase = HTTPStatus(answer.status).phrase if isinstance(answer.status, int) else answer.status
    documented: dict[str, Any] = {"description": answer.description or phrase}
    if answer.media_type is not None:
        media: dict[str, Any] = {}
        if answer.schema is not None:
            media["schema"] = components.schema(answer.schema)
        documented["content"] = {answer.media_type: media}
    if answer.location:
        documented["headers"] = {"Location": {"description": "Where to go next", "schema": dict(STRING)}}
    return documented


def _error(status: int | Answer, pages: bool, components: _Components) -> tuple[str, dict[str, Any]]:
    if isinstance(status, Answer):
        documented = _answer(status, components)
    elif pages:
        documented = _answer(page(status), components)
    else:
        documented = _answer(json_answer(status, ERROR_REF), components)
    code = status.status if isinstance(status, Answer) else status
    if code in (429, 503):
        documented.setdefault("headers", {}).update(_RETRY_AFTER)
    return str(code), documented


def _add(responses: dict[str, dict[str, Any]], status: str, documented: dict[str, Any]) -> None:
    """One status, several bodies (a page or the envelope; a stylesheet or a script): their content merges."""
    known = responses.setdefault(status, documented)
    if known is documented:
        return
    for part in ("content", "headers"):
        for name, value in documented.get(part, {}).items():
            known.setdefault(part, {}).setdefault(name, value)


def _parameter(param: Param) -> dict[str, Any]:
    documented: dict[str, Any] = {"name": param.name, "in": param.location, "required": param.required}
    if param.description:
        documented["description"] = param.description
    if param.style:
        documented |= {"style": param.style, "explode": True}
    documented["schema"] = dict(param.schema or STRING)
    return documented


def _operation(route: Route, components: _Components) -> dict[str, Any]:
    path_params = [
        {"name": name, "in": "path", "required": True, "schema": dict(STRING)}
        for name in re.findall(r"\{([^}:]+)(?::[^}]*)?\}", route.path)
    ]
    ok = _DEFAULT_OK.get(route.auth, (OK,)) if route.ok is None else route.ok
    responses: dict[str, dict[str, Any]] = {}
    for answer in [ok] if isinstance(ok, Answer) else ok:
        _add(responses, str(answer.status), _answer(answer, components))
    body = route.body if isinstance(route.body, Body) or route.body is None else Body(route.body)
    keyed = route.takes_idempotency_key
    params = [*route.params, _IDEMPOTENCY_KEY] if keyed else list(route.params)
    for error in [
        *route.errors,
        *_CREDENTIAL_ERRORS[route.auth],
        *(_BODY_ERRORS if body else ()),
        *(_IDEMPOTENCY_ERRORS if keyed else ()),
        _UNAVAILABLE,
    ]:
        _add(responses, *_error(error, route.pages, components))
    if params:
        _add(responses, "400", _answer(_TOO_LONG, components))
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.method, route.path),
        "summary": route.summary,
        "tags": [route.tag],
        "security": _SECURITY[route.auth],
    }
    if parameters := path_params + [_parameter(p) for p in params]:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": body.required,
            "content": {body.media_type: {"schema": components.schema(body.schema)}},
        }
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def build_document(routes: Sequence[Route], *, version: str = "0.1.0") -> dict[str, Any]:
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        openapi_path = re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", route.path)
        paths.setdefault(openapi_path, {})[route.method.lower()] = _operation(route, components)
    for method, path, summary, answers in _OPERATIONAL:
        paths.setdefault(path, {})[method.lower()] = {
            "operationId": _operation_id(method, path),
            "summary": summary,
            "tags": ["operations"],
            "security": [],
            "responses": {str(a.status): _answer(a, components) for a in answers},
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
            "schemas": dict(sorted(components.schemas.items())),
        },
    }

"""The protocol's error envelope, and the middleware that turns every failure into it.

Nango's frontend SDK read errors two ways over its history: up to 0.42.8 as
``AuthError(body.error, body.type)``, from 0.42.10 as ``AuthError(body.error.message,
body.error.code)``. The body we send serves both: the object envelope plus a top-level ``type``.
Nothing unexpected ever leaves as a stack trace: it becomes ``generic_error_support`` with an id
that is also in the log line.

The database or the broker being away, or too slow for the request's deadline, is not a defect but
a moment: it answers ``503`` ``service_unavailable`` with ``Retry-After`` (header, and ``payload``),
never a 500 and never the driver's words (``keyway_shared.unavailability`` says which failures).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from keyway_shared.logging import get_logger
from keyway_shared.unavailability import is_unavailability

__all__ = ["RETRY_AFTER_SECONDS", "ApiError", "error_middleware", "error_response", "service_unavailable"]

log = get_logger(__name__)

_STATUS_BY_CODE: dict[str, int] = {
    "missing_auth_header": 401,
    "malformed_auth_header": 401,
    "invalid_secret_key_format": 401,
    "unknown_user_account": 401,
    "missing_public_key": 401,
    "invalid_public_key": 401,
    "unknown_account": 401,
    "missing_connection": 400,
    "missing_connection_id": 400,
    "missing_provider_config": 400,
    "unknown_provider_config": 400,
    "unknown_provider_template": 400,
    "invalid_auth_mode": 400,
    "missing_api_key": 400,
    "missing_hmac": 400,
    "invalid_hmac": 400,
    "unknown_connection": 404,
    "duplicate_provider_config": 409,
    "invalid_json": 400,
    "invalid_body": 400,
    "invalid_query_params": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "too_many_request": 429,
    "payload_too_big": 413,
    "service_unavailable": 503,
    "invalid_idempotency_key": 400,
    "idempotency_key_in_use": 409,
    "idempotency_key_mismatch": 422,
}


RETRY_AFTER_SECONDS = web.AppKey("retry_after_seconds", int)  # KEYWAY_RETRY_AFTER_SECONDS, set by create_app
_DEFAULT_RETRY_AFTER = 2


class ApiError(Exception):
    """An error the client caused or must know about, sent as the protocol's envelope."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        payload: Any = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or code)
        self.headers = headers or {}
        self.code = code
        self.message = message
        self.status = status or _STATUS_BY_CODE.get(code, 400)
        self.payload = payload
        self.errors = errors


def error_body(code: str, message: str | None = None, *, payload: Any = None, errors: Any = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"code": code}
    if message:
        inner = {"message": message, "code": code}
    if payload is not None:
        inner["payload"] = payload
    if errors is not None:
        inner["errors"] = errors
    return {"error": inner, "type": code}


def error_response(err: ApiError) -> web.Response:
    body = error_body(err.code, err.message, payload=err.payload, errors=err.errors)
    return web.Response(status=err.status, body=json.dumps(body), content_type="application/json", headers=err.headers)


def service_unavailable(retry_after: int, *, nothing_done: bool = False) -> ApiError:
    """The 503 for a database or broker that is away or overloaded; ``nothing_done``: refused before any work."""
    if nothing_done:
        message = f"Too many requests are waiting on the database; nothing was done. Retry in {retry_after} s."
    else:
        message = (
            "The database or the message broker did not answer in time; a write this request made may or "
            f"may not have been applied. Retry in {retry_after} s."
        )
    return ApiError(
        "service_unavailable",
        message,
        status=503,
        payload={"retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return error_response(
                ApiError("not_found", f"No route matches {request.method} {request.path}", status=404)
            )
        if exc.status == 405:  # RFC 9110: a 405 lists the methods the resource has
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            return error_response(
                ApiError("method_not_allowed", f"{request.method} is not allowed here", status=405, headers=allow)
            )
        if exc.status == 413:
            return error_response(ApiError("payload_too_big", "The request body is too large", status=413))
        return error_response(ApiError(f"http_{exc.status}", exc.reason, status=exc.status))
    except Exception as exc:
        if is_unavailability(exc):
            log.warning(
                "answered 503: database or broker unavailable",
                path=request.path,
                method=request.method,
                error=exc.__class__.__name__,
            )
            return error_response(service_unavailable(request.app.get(RETRY_AFTER_SECONDS, _DEFAULT_RETRY_AFTER)))
        error_id = str(uuid.uuid4())
        log.exception("unhandled error", error_id=error_id, path=request.path, method=request.method)
        return error_response(
            ApiError(
                "generic_error_support",
                f"An error occurred. Please contact support with this unique id: {error_id}",
                status=500,
                payload=error_id,
            )
        )

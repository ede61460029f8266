"""Reading requests the way Nango's SDKs send them: bracket query keys, JSON bodies, validation."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from .errors import ApiError

__all__ = ["bracket_params", "json_object", "validated_body"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def bracket_params(query: MultiMapping[str], name: str) -> dict[str, str]:
    """``params[subdomain]=acme`` → ``{"subdomain": "acme"}`` (Express's qs parsing, flat values only).

    The SDK sends the literal ``undefined`` for a JS undefined value; it means "unset", so it is kept
    here as is and callers that care (authorization params) drop the key.
    """
    prefix = name + "["
    result: dict[str, str] = {}
    for key, value in query.items():
        if key.startswith(prefix) and key.endswith("]") and len(key) > len(prefix) + 1:
            result[key[len(prefix) : -1]] = value
    return result


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ApiError("invalid_body", "The request body must be a JSON object.")
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise ApiError("invalid_json", f"The request body is not valid JSON: {detail}") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_body", "The request body must be a JSON object.")
    return body


def validated_body(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [
            {"code": err["type"], "message": err["msg"], "path": [str(p) for p in err["loc"]]}
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ApiError("invalid_body", "The request body is invalid.", errors=errors) from exc

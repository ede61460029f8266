"""``POST /environment/webhook-signing-key/rotate``: a new webhook signing key, as Nango answers it today.

The key signs ``X-Nango-Hmac-Sha256`` on every webhook of the environment (``@nangohq/node`` 0.71's
``verifyIncomingWebhookRequest`` checks it with the client's ``webhookSigningKey``). Like Nango's
route, this one takes the secret key, no query parameter (any is refused, as its empty strict schema
refuses it), ignores the body but refuses one whose ``Content-Type`` is not JSON (415, as the JSON
middleware Nango puts in front of ``/environment`` does), and answers
``{"data": {"webhook_signing_key": …}}``. The new key alone signs from then on; what rotating does
is ``operations.environment_keys``, which the dashboard's button calls too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.query_issues import invalid_params, unrecognized_keys
from ..operations import environment_keys as operation
from ..operations.callers import secret_key

__all__ = ["ROTATED_ANSWER", "rotate_webhook_signing_key"]

ROTATED_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "object",
            "required": ["webhook_signing_key"],
            "properties": {"webhook_signing_key": {"type": "string", "format": "uuid"}},
        }
    },
}


def _refuse_other_content_types(request: web.Request) -> None:
    """Only a body that comes with one: HTTP clients label an empty POST ``application/octet-stream``."""
    content_type = request.headers.get("Content-Type")
    if request.body_exists and content_type and not content_type.startswith("application/json"):
        raise ApiError("invalid_content_type", "Content-Type header must be application/json", status=415)


@secret_key
async def rotate_webhook_signing_key(request: web.Request, env: Environment) -> web.Response:
    _refuse_other_content_types(request)
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)
    key = await operation.rotate_webhook_signing_key(request.app, env)
    return web.json_response({"data": {"webhook_signing_key": key}})

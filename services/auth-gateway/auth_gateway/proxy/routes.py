"""The ``/proxy`` lines of the route table (``auth_gateway.routes`` splices them in)."""

from __future__ import annotations

from ..openapi_spec import Answer, Body, Route, header
from .view import proxy

__all__ = ["PROXY_ROUTES"]

PROXY = (
    header("Connection-Id", required=True),
    header("Provider-Config-Key", required=True),
    header("Retries", "Retries on a network error or a retryable status (0 to 10)"),
    header("Retry-On", "Comma-separated statuses to retry besides 429 and 5xx"),
    header("Base-Url-Override", "Another base URL for this call"),
    header("Decompress", "'true' to decompress the upstream's answer"),
)
PROXY_ANSWER = Answer("default", None, description="The upstream's answer: its status, headers and body")
PROXY_BODY = Body({}, required=False)  # anything: forwarded as it came

PROXY_ROUTES: list[Route] = [
    Route(
        method,
        "/proxy/{path:.*}",
        proxy,
        "Call the connection's API, credentials added",
        "proxy",
        "secret_key",
        params=PROXY,
        body=PROXY_BODY if method in {"POST", "PUT", "PATCH"} else None,
        ok=PROXY_ANSWER,
        errors=(400, 403, 404, 502, 504),  # the gateway's own: 403 is the egress guard refusing the upstream
    )
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # GET brings HEAD
]

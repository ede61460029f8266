"""Bulk revocation of an integration's connections (secret key): start a job, read its progress."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import ApiError
from ..keys import environment_from_secret_key
from ..resources import STORES
from ..revocation_jobs import REVOCATION_JOBS
from ..serialize import js_iso

__all__ = ["get_revocation_job", "start_revocation_job"]

DEFAULT_CONCURRENCY, MAX_CONCURRENCY = 8, 32


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job["_id"],
        "provider_config_key": job["provider_config_key"],
        "status": job["status"],
        "delete": job["delete"],
        "total": job["total"],
        "done": job["done"],
        "failed": job["failed"],
        "deleted": job["deleted"],
        "created_at": js_iso(job.get("created_at")),
        "finished_at": js_iso(job.get("finished_at")),
    }


async def start_revocation_job(request: web.Request) -> web.Response:
    """``POST /config/{key}/revoke`` ``{"delete": bool, "concurrency": int}``: 202 with the new job."""
    env = await environment_from_secret_key(request)
    key = request.match_info["providerConfigKey"]
    if await request.app[STORES].integrations.get(env.name, key) is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    body: Any = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("invalid_json", "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_body", "The request body must be an object.")
    delete, concurrency = body.get("delete", False), body.get("concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(delete, bool):
        raise ApiError("invalid_body", "'delete' must be a boolean.")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ApiError("invalid_body", f"'concurrency' must be an integer from 1 to {MAX_CONCURRENCY}.")
    job = await request.app[REVOCATION_JOBS].start(env.name, key, delete=delete, concurrency=concurrency)
    return web.json_response(job_json(job), status=202)


async def get_revocation_job(request: web.Request) -> web.Response:
    """``GET /config/{key}/revoke[?job_id=]``: the progress of that job, or of the latest one."""
    env = await environment_from_secret_key(request)
    key = request.match_info["providerConfigKey"]
    job = await request.app[REVOCATION_JOBS].find(env.name, key, request.query.get("job_id"))
    if job is None:
        raise ApiError("not_found", f"No revocation job for '{key}' in '{env.name}'.", status=404)
    return web.json_response(job_json(job))

"""Bulk revocation of an integration's connections (secret key): start a job, read its progress."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import json_object, validated_body
from ..http.serialize import js_iso
from ..operations.callers import secret_key
from ..operations.revocation_jobs import REVOCATION_JOBS
from ..resources import STORES

__all__ = ["RevocationRequest", "get_revocation_job", "start_revocation_job"]

DEFAULT_CONCURRENCY, MAX_CONCURRENCY = 8, 32


class RevocationRequest(BaseModel):
    """The optional body of ``POST /config/{key}/revoke`` (strict: ``"true"`` is not a boolean here)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    delete: bool = Field(default=False, description="Also delete each connection once revoked")
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY)

    @field_validator("concurrency", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # JSON has one number type: 4.0 is the integer 4 to JSON Schema (and to JavaScript), so here too.
        return int(value) if isinstance(value, float) and value.is_integer() else value


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


@secret_key
async def start_revocation_job(request: web.Request, env: Environment) -> web.Response:
    """``POST /config/{key}/revoke`` ``{"delete": bool, "concurrency": int}``: 202 with the new job."""
    key = request.match_info["providerConfigKey"]
    if await request.app[STORES].integrations.get(env.name, key) is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    body = validated_body(RevocationRequest, await json_object(request, required=False))
    job = await request.app[REVOCATION_JOBS].start(env.name, key, delete=body.delete, concurrency=body.concurrency)
    return web.json_response(job_json(job), status=202)


@secret_key
async def get_revocation_job(request: web.Request, env: Environment) -> web.Response:
    """``GET /config/{key}/revoke[?job_id=]``: the progress of that job, or of the latest one."""
    key = request.match_info["providerConfigKey"]
    job = await request.app[REVOCATION_JOBS].find(env.name, key, request.query.get("job_id"))
    if job is None:
        raise ApiError("not_found", f"No revocation job for '{key}' in '{env.name}'.", status=404)
    return web.json_response(job_json(job))

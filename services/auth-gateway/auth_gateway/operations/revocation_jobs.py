"""Bulk revocation of an integration's connections, for incident response.

A job runs on the replica that started it, with bounded concurrency; its progress lives in MongoDB
(``revocation_jobs``) so any replica can report it. On shutdown a running job is marked interrupted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from keyway_shared.deadline import spawn_detached
from keyway_shared.events.envelope import utcnow
from keyway_shared.logging import get_logger
from keyway_shared.service import MONGO_DB

from ..resources import STORES
from .connection_removal import remove_connection
from .token_revocation import revoke_connection

__all__ = ["REVOCATION_JOBS", "RevocationJobs", "revocation_jobs_context"]

log = get_logger(__name__)
MAX_CONNECTIONS = 100_000


class RevocationJobs:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._col = app[MONGO_DB]["revocation_jobs"]
        self._tasks: set[asyncio.Task[None]] = set()

    async def ensure_indexes(self) -> None:
        await self._col.create_index([("environment", 1), ("provider_config_key", 1), ("created_at", -1)])

    async def start(
        self, environment: str, provider_config_key: str, *, delete: bool, concurrency: int
    ) -> dict[str, Any]:
        summaries = await self._app[STORES].connections.summaries(
            environment, provider_config_key=provider_config_key, limit=MAX_CONNECTIONS
        )
        ids = [str(doc["connection_id"]) for doc in summaries]
        now, job_id = utcnow(), uuid.uuid4().hex
        job: dict[str, Any] = {
            "_id": job_id,
            "environment": environment,
            "provider_config_key": provider_config_key,
            "delete": delete,
            "status": "running",
            "total": len(ids),
            "done": 0,
            "failed": 0,
            "deleted": 0,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
        }
        await self._col.insert_one(job)
        # Outside the deadline of the request that starts it (keyway_shared.deadline): the job outlives it.
        task = spawn_detached(self._run(job_id, environment, provider_config_key, ids, delete, concurrency))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def find(self, environment: str, provider_config_key: str, job_id: str | None) -> dict[str, Any] | None:
        query: dict[str, Any] = {"environment": environment, "provider_config_key": provider_config_key}
        if job_id:
            query["_id"] = job_id
        return await self._col.find_one(query, sort=[("created_at", -1)])

    async def _count(self, job_id: str, **inc: int) -> None:
        await self._col.update_one({"_id": job_id}, {"$inc": inc, "$set": {"updated_at": utcnow()}})

    async def _one(self, job_id: str, environment: str, key: str, connection_id: str, delete: bool) -> None:
        stores = self._app[STORES]
        try:
            connection = await stores.connections.get(environment, key, connection_id)
            if connection is None:  # deleted meanwhile: nothing left to revoke
                await self._count(job_id, done=1)
                return
            revocation = await revoke_connection(self._app, connection)
            deleted = 0
            if delete:  # revoked just above: the delete itself, as DELETE /connection does it
                removal = await remove_connection(self._app, environment, key, connection_id, revoke=False)
                deleted = int(removal is not None)
            ok = revocation is None or revocation.status == "revoked"
            await self._count(job_id, done=int(ok), failed=int(not ok), deleted=deleted)
        except asyncio.CancelledError:
            raise
        except Exception:  # one connection's failure must not stop the others
            log.exception("bulk revocation step failed", job_id=job_id, connection_id=connection_id)
            await self._count(job_id, failed=1)

    async def _run(
        self, job_id: str, environment: str, key: str, ids: list[str], delete: bool, concurrency: int
    ) -> None:
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(connection_id: str) -> None:
            async with semaphore:
                await self._one(job_id, environment, key, connection_id, delete)

        status = "done"
        try:
            await asyncio.gather(*(bounded(c) for c in ids))
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        finally:
            now = utcnow()
            await asyncio.shield(
                self._col.update_one(
                    {"_id": job_id}, {"$set": {"status": status, "finished_at": now, "updated_at": now}}
                )
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


REVOCATION_JOBS = web.AppKey("revocation_jobs", RevocationJobs)


def revocation_jobs_context() -> Callable[[web.Application], AsyncIterator[None]]:
    """Opened last, so running jobs stop before the relay, HTTP client and database close."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        jobs = RevocationJobs(app)
        await jobs.ensure_indexes()
        app[REVOCATION_JOBS] = jobs
        yield
        await jobs.close()

    return ctx

"""Reading the activity log back: newest operations first, one operation with its messages.

The query API (filters, free text, cursors) arrives with issue 7; these two reads are what the
tests and that API start from, and both ride on indexes declared in ``keyway_shared.store.indexes``.
"""

from __future__ import annotations

from typing import Any

from keyway_shared.store import Database

__all__ = ["get_operation", "list_operations"]

MAX_PAGE = 500


async def list_operations(db: Database, environment: str, limit: int = 100) -> list[dict[str, Any]]:
    """The environment's operations, newest first (ties broken by id, so the order is stable)."""
    cursor = (
        db["activity_operations"]
        .find({"environment": environment})
        .sort([("created_at", -1), ("_id", -1)])
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return [doc async for doc in cursor]


async def get_operation(db: Database, operation_id: str) -> dict[str, Any] | None:
    """One operation with its ``messages`` in the order they happened, or None."""
    operation = await db["activity_operations"].find_one({"_id": operation_id})
    if operation is None:
        return None
    cursor = db["activity_messages"].find({"operation_id": operation_id}).sort([("created_at", 1), ("_id", 1)])
    operation["messages"] = [doc async for doc in cursor]
    return operation

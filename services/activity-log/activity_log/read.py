"""Reading the activity log back from tests and tools, over the shared reads the gateway's ``/logs`` uses.

The query API itself (filters, free text, cursors) is ``keyway_shared.activity.query``; these two
helpers skip the environment check a caller with a secret key gets.
"""

from __future__ import annotations

from typing import Any

from keyway_shared.activity import OperationFilter
from keyway_shared.activity import get_operation as _get_operation
from keyway_shared.activity import list_operations as _list_operations
from keyway_shared.store import Database

__all__ = ["get_operation", "list_operations"]


async def list_operations(db: Database, environment: str, limit: int = 100) -> list[dict[str, Any]]:
    """The environment's operations of the last month, newest first (ties broken by id)."""
    page = await _list_operations(db, OperationFilter(environment=environment), limit=limit)
    return page.operations


async def get_operation(db: Database, operation_id: str) -> dict[str, Any] | None:
    """One operation with its ``messages`` in the order they happened, or None."""
    found = await db["activity_operations"].find_one({"_id": operation_id}, {"environment": 1})
    if found is None:
        return None
    return await _get_operation(db, str(found["environment"]), operation_id)

"""The database commands a test's own client sends, seen through pymongo's command monitoring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient, monitoring


class CommandLog(monitoring.CommandListener):
    """Every command started, as ``(name, collection, command)``; what a test counts is its own."""

    def __init__(self) -> None:
        self.started_commands: list[tuple[str, Any, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        self.started_commands.append((name, event.command.get(name), dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def of(self, name: str, collection: str | None = None) -> list[dict[str, Any]]:
        """The ``name`` commands sent (on ``collection`` only, when given), oldest first."""
        return [
            command
            for started, target, command in self.started_commands
            if started == name and (collection is None or target == collection)
        ]


@asynccontextmanager
async def logged_database(mongo_url: str, name: str) -> AsyncIterator[tuple[Any, CommandLog]]:
    """Database ``name`` through a client of its own whose commands are logged."""
    log = CommandLog()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[log])
    try:
        yield client[name], log
    finally:
        await client.close()

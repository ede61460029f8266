"""The environment-changed broadcast: its message, and each service process's one listener for it.

After the gateway changes an environment's settings, keys or outgoing webhooks, every process that
caches something of that environment must forget it: the gateway's replicas (environments by API
key) and the webhook dispatcher's (signing keys, endpoint states). The replica that made the change
announces it on a fanout exchange (``environment_changes_exchange``) that every one of them listens
to through its :class:`EnvironmentChanges`; the caches of a process subscribe to that one listener.

The wire format is ``{"environment": "<name>"}``, as it has always been, so replicas of different
versions understand each other during a rolling deploy; fields added later are ignored by
:meth:`EnvironmentChanged.decode`. A lost broadcast is survivable: the caches' entries expire in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from ..deadline import remaining
from ..logging import get_logger
from .fanout import listen_to_fanout

__all__ = ["EnvironmentChanged", "EnvironmentChanges"]

log = get_logger(__name__)
_PUBLISH_PATIENCE = 2.0  # seconds an announcement may wait for the broker
_MESSAGE_EXPIRATION = 60  # seconds: a listener this far behind has let its entries expire anyway


@dataclass(frozen=True, slots=True)
class EnvironmentChanged:
    environment: str

    def encode(self) -> bytes:
        return json.dumps({"environment": self.environment}).encode()

    @classmethod
    def decode(cls, body: bytes) -> EnvironmentChanged:
        """Raises ValueError for anything that does not name an environment."""
        try:
            name = json.loads(body)["environment"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError("not an environment change") from exc
        if not isinstance(name, str) or not name:
            raise ValueError("not an environment change")
        return cls(environment=name)


class EnvironmentChanges:
    """A process's one listener on the broadcast, and how it announces a change of its own."""

    def __init__(self, exchange_name: str) -> None:
        self._exchange_name = exchange_name
        self._exchange: AbstractExchange | None = None
        self._forgetters: list[Callable[[str], None]] = []

    def subscribe(self, forget: Callable[[str], None]) -> None:
        """Call ``forget(environment)`` for every change, heard or announced here."""
        self._forgetters.append(forget)

    async def attach(self, connection: AbstractRobustConnection) -> None:
        """The broker link's on-connect callback; a failed try closes its channel (the link tries again)."""
        self._exchange = await listen_to_fanout(connection, self._exchange_name, self._on_message)

    async def announce(self, environment: str) -> None:
        """This process forgets the environment now, every other one when the broadcast reaches it.

        Within the request's deadline: a blackholed broker would hold the confirmation for minutes,
        and the other processes' entries expire by themselves in seconds anyway.
        """
        self.heard(EnvironmentChanged(environment=environment))
        if self._exchange is None:
            return
        message = aio_pika.Message(EnvironmentChanged(environment=environment).encode(), expiration=_MESSAGE_EXPIRATION)
        with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(remaining(_PUBLISH_PATIENCE)):
                await self._exchange.publish(message, routing_key="")

    def heard(self, change: EnvironmentChanged) -> None:
        for forget in self._forgetters:
            forget(change.environment)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            change = EnvironmentChanged.decode(message.body)
        except ValueError:
            log.warning("ignoring a malformed environment change broadcast")
            return
        self.heard(change)

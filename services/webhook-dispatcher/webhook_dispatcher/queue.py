"""Putting a delivery on the ``send`` queue: now (a replay), after a wait (a retry), or aside (dead)."""

from __future__ import annotations

from collections.abc import Callable

from keyway_shared.bus import ConsumerRunner, ConsumerSpec, EventPublisher, PublishError

from .messages import WebhookDelivery, delivery_message

__all__ = ["DeliveryQueue"]


class DeliveryQueue:
    def __init__(
        self,
        spec: ConsumerSpec,
        *,
        publisher: Callable[[], EventPublisher | None],
        runner: Callable[[], ConsumerRunner | None],
    ) -> None:
        self.spec = spec
        self._publisher = publisher
        self._runner = runner

    def _connected(self) -> tuple[EventPublisher, ConsumerRunner]:
        publisher, runner = self._publisher(), self._runner()
        if publisher is None or runner is None:
            raise PublishError("the broker is not connected yet")
        return publisher, runner

    async def now(self, delivery: WebhookDelivery, *, environment: str) -> None:
        publisher, _ = self._connected()
        await publisher.publish_to_queue(delivery_message(delivery, environment=environment), queue=self.spec.queue)

    async def later(self, delivery: WebhookDelivery, *, environment: str, delay: float, attempt: int) -> None:
        _, runner = self._connected()
        message = delivery_message(delivery, environment=environment)
        await runner.publish_later(self.spec, message, delay=delay, attempt=attempt)

    async def dead(self, delivery: WebhookDelivery, *, environment: str) -> None:
        """Where a delivery that gave up waits for a person, as one that used all its retries does."""
        publisher, _ = self._connected()
        message = delivery_message(delivery, environment=environment)
        await publisher.publish_to_queue(message, queue=self.spec.dead_letter_queue)

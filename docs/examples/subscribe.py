"""Subscribe to Keyway's event stream: bind your own queue to the ``keyway.events`` topic exchange.

    uv run python docs/examples/subscribe.py                 # every event
    uv run python docs/examples/subscribe.py 'connection.*'  # only connection events

Needs only aio-pika. Events are CloudEvents 1.0 JSON; the routing key is the event type. The queue
is durable and named after you, so events published while you are away wait for you.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aio_pika


async def main() -> None:
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    exchange_name = os.environ.get("KEYWAY_EVENTS_EXCHANGE", "keyway.events")
    queue_name = os.environ.get("SUBSCRIBER_QUEUE", "my-app.keyway-events")
    patterns = sys.argv[1:] or ["#"]
    limit = int(os.environ.get("SUBSCRIBER_LIMIT", "0"))  # stop after this many events (0: never)

    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)
        print(f"listening on {queue_name} for {patterns}", flush=True)
        seen = 0
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():  # ack after the block; an exception requeues it
                    event = json.loads(message.body)
                    print(json.dumps({k: event[k] for k in ("id", "type", "environment", "time", "data")}), flush=True)
                seen += 1
                if limit and seen >= limit:
                    break


if __name__ == "__main__":
    asyncio.run(main())

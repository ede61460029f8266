"""The README's subscriber example really receives events."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from keyway_shared.bus import EventPublisher
from keyway_shared.events import ConnectionCreated, make_event

pytestmark = [pytest.mark.broker]

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscribe.py"


async def test_subscriber_example_prints_published_events(amqp: Any, amqp_url: str, namespace: str) -> None:
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "KEYWAY_EVENTS_EXCHANGE": f"{namespace}.events",
        "SUBSCRIBER_QUEUE": f"{namespace}.subscriber",
        "SUBSCRIBER_LIMIT": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "connection.*", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    assert b"listening on" in first
    event = make_event(
        ConnectionCreated(connection_id="c1", provider_config_key="ph", provider="posthog", auth_mode="API_KEY"),
        type="connection.created",
        source="/test",
        environment="dev",
    )
    await EventPublisher(amqp, exchange_name=f"{namespace}.events").publish(event)
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    printed = json.loads(line)
    assert printed["id"] == event.id
    assert printed["type"] == "connection.created"
    assert printed["data"]["connection_id"] == "c1"
    assert await asyncio.wait_for(proc.wait(), timeout=20) == 0

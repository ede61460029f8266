"""The environment-changed broadcast: its wire format (unchanged, so replicas of two versions
understand each other during a rolling deploy), and a process's one listener telling every cache."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import aio_pika
import pytest

from keyway_shared.bus.environment_changes import EnvironmentChanged, EnvironmentChanges


def test_the_message_round_trips_in_the_format_older_replicas_send_and_read() -> None:
    change = EnvironmentChanged(environment="dev")
    assert EnvironmentChanged.decode(change.encode()) == change
    assert EnvironmentChanged.decode(b'{"environment": "dev"}') == change  # what older gateways send
    assert json.loads(change.encode()) == {"environment": "dev"}  # what older listeners read


def test_fields_a_later_version_adds_are_ignored() -> None:
    assert EnvironmentChanged.decode(b'{"environment": "dev", "reason": "keys"}') == EnvironmentChanged("dev")


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"env": "dev"}', b'{"environment": 3}', b'{"environment": ""}', b"\xff"]
)
def test_anything_that_names_no_environment_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match="not an environment change"):
        EnvironmentChanged.decode(body)


class Exchange:
    def __init__(self, *, fails: bool = False) -> None:
        self.published: list[bytes] = []
        self.fails = fails

    async def publish(self, message: aio_pika.Message, routing_key: str) -> None:
        if self.fails:
            raise ConnectionError("broker away")
        self.published.append(message.body)


def listener(exchange: Exchange | None = None) -> tuple[EnvironmentChanges, list[str], list[str]]:
    changes = EnvironmentChanges("unused")
    first: list[str] = []
    second: list[str] = []
    changes.subscribe(first.append)
    changes.subscribe(second.append)
    fake: Any = exchange
    changes._exchange = fake  # what attach() keeps: the exchange it listens to
    return changes, first, second


async def test_every_subscriber_hears_a_broadcast_and_a_malformed_one_is_ignored() -> None:
    changes, first, second = listener()
    heard: Any = SimpleNamespace(body=b'{"environment": "dev"}')
    await changes._on_message(heard)
    garbage: Any = SimpleNamespace(body=b"garbage")
    await changes._on_message(garbage)
    assert first == second == ["dev"]


async def test_an_announcement_tells_this_process_at_once_then_the_others() -> None:
    exchange = Exchange()
    changes, first, second = listener(exchange)
    await changes.announce("dev")
    assert first == second == ["dev"]
    assert exchange.published == [EnvironmentChanged("dev").encode()]


async def test_an_announcement_the_broker_refuses_still_tells_this_process() -> None:
    changes, first, _second = listener(Exchange(fails=True))
    await changes.announce("dev")
    assert first == ["dev"]

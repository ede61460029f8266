"""The dispatcher logs a webhook URL without its userinfo or secret-looking query values.

A receiver's URL may carry its own credentials (``https://user:password@…``, ``?token=``, ``?sig=``);
the request still goes to the URL as configured, but log lines show it masked. The log calls are
captured before any processor (``capture_logs``), so the masking must be the dispatcher's own, not
the last-resort redaction of the logging set-up.
"""

from __future__ import annotations

from typing import Any

import aio_pika
import pytest
from structlog.testing import capture_logs

from keyway_shared.bus import EventPublisher
from keyway_shared.cipher import CredentialCipher
from keyway_shared.events import ConnectionCreated
from keyway_shared.logging import REDACTED
from keyway_shared.store import EnvironmentStore
from webhook_dispatcher.app import create_app

from ..support.inproc import event
from ..support.polling import eventually
from ..support.scripted_receiver import scripted_receiver
from ..support.webhooks import configure, dispatcher_settings, running_dispatcher, webhook_events

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

PASSWORD = "hookPASSWORD0123"
TOKEN = "hookTOKEN0123456789"
SIGNATURE = "hookSIG0123456789"


async def test_a_failing_webhook_url_is_logged_masked(
    mongo_url: str,
    db_name: str,
    amqp_url: str,
    namespace: str,
    encryption_key: str,
    db: Any,
    amqp: aio_pika.abc.AbstractRobustConnection,
) -> None:
    settings = dispatcher_settings(
        mongo_url=mongo_url, db_name=db_name, amqp_url=amqp_url, namespace=namespace, encryption_key=encryption_key
    )
    environments = EnvironmentStore(db, CredentialCipher(current_key=encryption_key))
    publisher = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    async with scripted_receiver(status=410) as rec, webhook_events(amqp, namespace) as results:
        url = f"http://hooks:{PASSWORD}@127.0.0.1:{rec.port}/hook?token={TOKEN}&sig={SIGNATURE}&tenant=acme"
        await configure(environments, primary_url=url)
        conn = {"connection_id": "c-1", "provider_config_key": "ph", "provider": "posthog", "auth_mode": "API_KEY"}
        with capture_logs() as logs:
            async with running_dispatcher(create_app(settings)):
                await publisher.publish(event("connection.created", ConnectionCreated(**conn)))
                await eventually(lambda: _disabled(results), what="the endpoint disabled by its 410")
    await publisher.close()
    assert rec.received[0].path == "/hook"  # the request itself went to the URL as configured
    assert rec.received[0].headers["Authorization"].startswith("Basic ")
    with_url = [entry for entry in logs if "url" in entry]
    assert {entry["event"] for entry in with_url} >= {"webhook attempt failed", "webhook endpoint disabled"}
    masked = f"http://{REDACTED}@127.0.0.1:{rec.port}/hook?token={REDACTED}&sig={REDACTED}&tenant=acme"
    assert [entry["url"] for entry in with_url] == [masked] * len(with_url)
    assert not any(secret in repr(logs) for secret in (PASSWORD, TOKEN, SIGNATURE))


async def _disabled(results: list[Any]) -> bool:
    return any(r.type == "webhook.endpoint_disabled" for r in results)

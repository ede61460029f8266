"""The steps of a connect attempt in the activity log, and the ids that tie them together.

An attempt's operation id names its activity entry; each step (``activity.message``) goes through
the outbox like every event, so a step is never lost to a broker outage. The flows, the
post-connection enrichment and the connection write all tell their part here.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.activity import redacted_text
from keyway_shared.events import ActivityMessage, HttpExcerpt, make_event
from keyway_shared.logging import get_logger, redact

from ..resources import STORES
from .outbox_relay import RELAY

__all__ = ["SOURCE", "new_operation_id", "record_step"]

SOURCE = "/keyway/auth-gateway"
log = get_logger(__name__)


def new_operation_id() -> str:
    return uuid.uuid4().hex


async def record_step(
    app: web.Application,
    *,
    environment: str,
    operation_id: str,
    message: str,
    state: str | None = None,
    level: str = "info",
    provider_config_key: str | None = None,
    provider: str | None = None,
    connection_id: str | None = None,
    request: HttpExcerpt | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """One step of a connect attempt for the activity log (``activity.message``), redacted before it leaves.

    Build ``request`` with ``keyway_shared.activity.http_excerpt`` (URL and body redacted, body cut
    to 4 KB). A step that cannot be written is logged and skipped: it must not fail the flow it tells.
    """
    data = ActivityMessage(
        operation_id=operation_id,
        operation_type="auth:create_connection",
        level=level,  # type: ignore[arg-type]
        message=redacted_text(message),
        state=state,  # type: ignore[arg-type]
        provider_config_key=provider_config_key,
        provider=provider,
        connection_id=connection_id,
        request=request,
        meta=redact(meta) if meta else None,
    )
    subject = f"{provider_config_key}/{connection_id}" if provider_config_key and connection_id else None
    event = make_event(data, type="activity.message", source=SOURCE, environment=environment, subject=subject)
    try:
        row = await app[STORES].outbox.add(event)
    except PyMongoError:
        log.warning("activity step not recorded", operation_id=operation_id, step=data.message)
        return
    app[RELAY].publish_soon([row])

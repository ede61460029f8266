"""Post-connection enrichment in the gateway: a new connection's ``connection_config`` filled from
its provider (``keyway_shared.providers.enrichment``) before it is stored, so the stored connection
that ``connection.created`` (or ``connection.updated``) and the auth webhook announce already has
the fields, and an app reading it on that webhook finds them.

Nango runs its post-connection script after storing the connection, awaited before the auth
webhook goes out, on creation and on every re-authorization; a failure is logged in an operation of
its own and the connection stays. Keyway runs it earlier (one write, no second version of the
connection to race with), also on creation and re-authorization, and a failure is a ``warn`` step of
the connect attempt's own activity entry: the connection is stored without the fields.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.activity import http_excerpt
from keyway_shared.credentials import Credentials
from keyway_shared.providers.enrichment.context import EnrichmentContext, EnrichmentLimits

from ..resources import CATALOG, HTTP, SETTINGS
from .attempt_steps import record_step

__all__ = ["enriched_config"]


async def enriched_config(
    app: web.Application,
    *,
    environment: str,
    provider_config_key: str,
    provider: str,
    connection_id: str,
    operation_id: str,
    credentials: Credentials,
    connection_config: dict[str, Any],
    given_wins: bool = False,
) -> dict[str, Any]:
    """The configuration to store: ``connection_config`` with what the template's post-connection
    program fills (unchanged when it declares none, or when it fails).

    ``given_wins``: an import's own fields win over what the program looked up (Nango runs its
    script on import too, but the importer may know better, e.g. the tenant it chose); a connect
    flow's config is the person's input, which the program may complete or correct.
    """
    template = app[CATALOG].get(provider)
    if template is None:
        return connection_config
    call_seconds = app[SETTINGS].provider_timeout_seconds
    context = EnrichmentContext(
        provider=provider,
        provider_config_key=provider_config_key,
        template=template,
        credentials=credentials,
        connection_config=dict(connection_config),
        http=app[HTTP],
        limits=EnrichmentLimits(call_seconds=call_seconds, total_seconds=2 * call_seconds),
    )
    # The runner (its hooks, one module per provider, and its step programs) is imported by the
    # first connection made, not at start: ~0.2 MB an idle gateway (issue 19) does not hold.
    from keyway_shared.providers.enrichment.runner import enrich

    outcome = await enrich(context)
    if not outcome.ran:
        return connection_config
    step: dict[str, Any] = {
        "environment": environment,
        "operation_id": operation_id,
        "provider_config_key": provider_config_key,
        "provider": provider,
        "connection_id": connection_id,
    }
    for call in outcome.calls:
        status = f"HTTP {call.status}" if call.status is not None else "no answer"
        await record_step(
            app,
            message=f"Post-connection call {call.method} {call.url}: {status}",
            request=http_excerpt(call.method, call.url, status=call.status, duration_ms=call.duration_ms),
            **step,
        )
    meta = {"filled": list(outcome.filled), "script": template.post_connection_script}
    if outcome.problems:
        await record_step(
            app,
            message="Post-connection enrichment incomplete: " + "; ".join(outcome.problems),
            level="warn",
            meta=meta | {"problems": list(outcome.problems)},
            **step,
        )
    else:
        filled = ", ".join(outcome.filled) or "nothing"
        await record_step(app, message=f"Post-connection enrichment filled {filled}", meta=meta, **step)
    return {**outcome.connection_config, **connection_config} if given_wins else outcome.connection_config

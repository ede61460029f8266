"""MCP_OAUTH2: OAuth 2 against an MCP server's authorization server whose endpoints the catalog names.

OAuth 2's popup flow (``modes/oauth2.py``) on the template :func:`mcp_template` makes of the catalog's
(PKCE always, the ``resource`` indicator in every request), as Keyway's own client there
(``connect/own_client.py``: registered once and kept, the metadata document's URL, or the
integration's own). The connection stores OAuth 2 credentials and the client it was authorized as,
which the shared refresh reads (``keyway_shared.credentials.mcp_auth``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from keyway_shared.credentials import PermanentTokenError
from keyway_shared.credentials.mcp_auth import (
    CLIENT_INFO_FIELD,
    KEPT_FIELDS,
    AuthorizationServer,
    mcp_template,
)
from keyway_shared.store import Environment

from ...operations.flow_errors import FlowError
from ...operations.flow_sessions import OAuthSession
from ..own_client import OwnClient, catalog_registration, own_client
from ..popup_common import PopupStart, flow_config, reload_integration
from .oauth2 import exchange_and_connect, redirect_to_authorize
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC", "finish_mcp", "flow_config_with_client"]


def flow_config_with_client(start: PopupStart, client: OwnClient, server: AuthorizationServer | None) -> dict[str, Any]:
    """The browser's configuration without what only discovery may fill (a browser's
    ``params[oauth_metadata]`` would choose where refresh tokens go), plus the server and the client."""
    config = {k: v for k, v in flow_config(start.request, start.front).items() if k not in KEPT_FIELDS}
    if server is not None:
        config |= server.to_config()
    config[CLIENT_INFO_FIELD] = json.dumps({"client_id": client.client_id})
    return config


async def start_mcp_oauth2(start: PopupStart) -> web.StreamResponse:
    template = start.template
    client = await own_client(
        start,
        registration=catalog_registration(template),
        registration_endpoint=template.registration_url,
        registration_params=template.registration_params,
    )
    return await redirect_to_authorize(
        start,
        template=mcp_template(template, None),
        client_id=client.client_id,
        client_secret=client.client_secret,
        config=flow_config_with_client(start, client, None),
    )


async def finish_mcp(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    """Both MCP modes' callback: the code exchanged at the server the flow began with."""
    _integration, template = await reload_integration(request, env, session)
    mcp_url = session.connection_config.get("mcp_server_url")
    allow_http = isinstance(mcp_url, str) and mcp_url.startswith("http://")
    try:
        server = AuthorizationServer.from_config(session.connection_config, allow_http=allow_http)
    except PermanentTokenError as exc:
        raise FlowError("provider_config_err", exc.description) from None
    return await exchange_and_connect(request, session, template=mcp_template(template, server))


SPEC = AuthModeSpec(mode="MCP_OAUTH2", flow=PopupFlow(start=start_mcp_oauth2, finish=finish_mcp))

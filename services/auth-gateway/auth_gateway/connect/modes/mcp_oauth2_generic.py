"""MCP_OAUTH2_GENERIC: OAuth 2 against any MCP server the person names (``params[mcp_server_url]``).

Its authorization server is discovered (RFC 9728, then RFC 8414: ``keyway_shared.credentials.mcp_auth``);
Keyway's client there is named by Keyway's client ID metadata document when the server supports those
and Keyway can serve one, else registered (RFC 7591) once and kept on the integration. The flow is
then MCP_OAUTH2's; the server's metadata is kept in the connection's configuration (as Nango keeps it:
``oauth_metadata``, ``oauth_client_info``, ``oauth_resource_url``) for the refreshes.
"""

from __future__ import annotations

from aiohttp import web

from keyway_shared.credentials import TokenRequestError
from keyway_shared.credentials.mcp_auth import McpMetadataError, discover, mcp_template
from keyway_shared.providers.interpolation import UnsafeParamError, check_pattern

from ...operations.flow_errors import FlowError
from ...resources import HTTP, SETTINGS
from ..own_client import client_metadata_url, own_client, record
from ..popup_common import PopupStart, flow_config
from .mcp_oauth2 import finish_mcp, flow_config_with_client
from .oauth2 import redirect_to_authorize
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC"]


async def start_mcp_generic(start: PopupStart) -> web.StreamResponse:
    request, template = start.request, start.template
    given = flow_config(request, start.front).get("mcp_server_url")
    if not isinstance(given, str) or not given:
        raise FlowError("missing_connection_config", "The MCP server's URL is missing: params[mcp_server_url].")
    try:  # the catalog's pattern (https) holds before anything is fetched from it
        check_pattern("mcp_server_url", given, template.field_patterns())
    except UnsafeParamError as exc:
        raise FlowError("url_param_err", f"params[mcp_server_url] {exc.reason}.") from None
    try:
        server = await discover(
            request.app[HTTP], given, timeout_seconds=request.app[SETTINGS].provider_timeout_seconds
        )
    except McpMetadataError as exc:
        raise FlowError("discovery_err", exc.message) from None
    except TokenRequestError as exc:
        raise FlowError("discovery_err", exc.description) from None
    cimd = server.client_id_metadata_document_supported and client_metadata_url(
        request.app, start.env.name, start.integration.unique_key
    )
    await record(
        start,
        f"Authorization server discovered: {server.issuer}",
        token_endpoint=server.token_endpoint,
        registration_endpoint=server.registration_endpoint,
        client_id_metadata_document_supported=server.client_id_metadata_document_supported,
    )
    client = await own_client(
        start,
        registration="cimd" if cimd else "dynamic",
        registration_endpoint=server.registration_endpoint,
    )
    return await redirect_to_authorize(
        start,
        template=mcp_template(template, server),
        client_id=client.client_id,
        client_secret=client.client_secret,
        config=flow_config_with_client(start, client, server),
        scopes=list(server.scopes),
    )


SPEC = AuthModeSpec(mode="MCP_OAUTH2_GENERIC", flow=PopupFlow(start=start_mcp_generic, finish=finish_mcp))

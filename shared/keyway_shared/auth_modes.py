"""The auth modes, written once: their names, and what every service may need to know of each.

A provider template names one auth mode (``auth_mode`` in providers.yaml). This module is the one
list of them (``AuthMode``, ``AUTH_MODES``) and, in ``MODE_FACTS``, what can be said of a mode without
running its flow: how a browser connects, what the integration must hold, what a person types, and
as which credentials an import stores it. Everything that keeps a set of modes derives it from here
(``modes_where``); the gateway's ``connect/modes`` adds each mode's flow, and the credentials a mode
stores say themselves how they are refreshed and sent upstream (``keyway_shared.credentials.shapes``).

It imports nothing of the library, so that anything (the template schema, the event models) can
import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "AUTH_MODES",
    "MODE_FACTS",
    "AuthMode",
    "BrowserFlow",
    "ConnectionsPost",
    "IntegrationCredentials",
    "ModeFacts",
    "TypedField",
    "mode_named",
    "modes_where",
]

# The order is the published one (event schemas list it as their enum).
AuthMode = Literal[
    "OAUTH1",
    "OAUTH2",
    "OAUTH2_CC",
    "BASIC",
    "API_KEY",
    "APP_STORE",
    "CUSTOM",
    "APP",
    "NONE",
    "TBA",
    "MCP_OAUTH2",
    "MCP_OAUTH2_GENERIC",
    "JWT",
    "SIGNATURE",
    "AWS_SIGV4",
    "BILL",
    "INSTALL_PLUGIN",
    "TWO_STEP",
]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)

# How a browser connects: a popup to the provider and back through the callback, a form whose
# fields are posted to the gateway, or a call that asks for nothing ("none": NONE's connection).
BrowserFlow = Literal["popup", "form", "none"]

# The shape of an integration's own app in Nango's current ``/integrations`` (its ``credentials``: what
# POST and PATCH take, what ``?include=credentials`` shows): an OAuth client, a GitHub App, or both.
IntegrationCredentials = Literal["oauth_client", "app", "custom"]

# What Keyway does with credentials of a mode posted to Nango's current ``POST /connections``: import
# them (as ``imported_as``), or refuse them (Nango's schema takes them; Keyway connects them instead).
ConnectionsPost = Literal["import", "refuse"]


@dataclass(frozen=True, kw_only=True)
class TypedField:
    """A credential a person types, named as the frontend SDK's ``credentials`` option names it."""

    name: str
    label: str
    kind: Literal["text", "password", "textarea"] = "text"
    required: bool = True
    example: str | None = None  # a template's field may show one, and a pattern a value must match
    pattern: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModeFacts:
    browser: BrowserFlow | None  # None: no browser flow; such connections are imported (POST /connection)
    client: bool = False  # the integration holds an OAuth client id and secret, which /config requires
    scopes: bool = False  # the integration's scopes are asked for (its form offers them)
    github_app: bool = False  # the integration names a GitHub App: its link, id and private key
    plugin: bool = False  # the integration names a marketplace plugin: its install link and its token
    editable: bool = True  # False: the credentials come with each connection, PUT /config has nothing to change
    typed: tuple[TypedField, ...] = ()  # what a person types on the form (browser "form")
    imported_as: AuthMode | None = None  # the credentials type POST /connection stores; None: not importable
    # Nango's current API (``/integrations``, ``/connections``), where it names what a mode takes:
    integration_credentials: IntegrationCredentials | None = None  # None: the integration shows none there
    credentials_required: bool = False  # POST /integrations refuses an integration of it without credentials
    webhook_secret_clears: bool = False  # a PATCH /integrations whose webhook_secret is empty drops the kept one
    quickstart: bool = False  # Nango lends it a shared developer app (POST /integrations/quickstart)
    connections_post: ConnectionsPost | None = None  # None: POST /connections' schema has no such type
    # The OAuth client is Keyway's own at the provider's authorization server (MCP): registered there
    # (RFC 7591) and kept encrypted on the integration, or named by Keyway's client ID metadata document.
    own_client: bool = False
    # A mode whose token Keyway makes itself: the ``signature.protocol`` values its templates may
    # declare, beside a ``token`` (keyway_shared.providers.token_declaration); empty for the others.
    token_protocols: frozenset[str] = frozenset()
    # Its connections hold only credentials that never expire and are never refreshed (their type's
    # ``refreshable`` is False): the refresher has nothing to schedule for them.
    never_refreshed: bool = False


_CLIENT_FIELDS = (
    TypedField(name="client_id", label="Client id"),
    TypedField(name="client_secret", label="Client secret", kind="password"),
)
_APP_STORE_FIELDS = (
    TypedField(name="privateKeyId", label="Private key id"),
    TypedField(name="issuerId", label="Issuer id"),
    TypedField(name="privateKey", label="Private key (PEM)", kind="textarea"),
)

MODE_FACTS: dict[AuthMode, ModeFacts] = {
    "OAUTH1": ModeFacts(
        browser="popup",
        client=True,
        imported_as="OAUTH1",
        integration_credentials="oauth_client",
        credentials_required=True,
        quickstart=True,
        connections_post="import",
        never_refreshed=True,
    ),
    "OAUTH2": ModeFacts(
        browser="popup",
        client=True,
        scopes=True,
        imported_as="OAUTH2",
        integration_credentials="oauth_client",
        credentials_required=True,
        webhook_secret_clears=True,
        quickstart=True,
        connections_post="import",
    ),
    "OAUTH2_CC": ModeFacts(browser="form", client=True, scopes=True, typed=_CLIENT_FIELDS, connections_post="refuse"),
    "BASIC": ModeFacts(
        browser="form",
        editable=False,
        typed=(
            TypedField(name="username", label="User name"),
            TypedField(name="password", label="Password", kind="password", required=False),
        ),
        imported_as="BASIC",
        connections_post="import",
        never_refreshed=True,
    ),
    "API_KEY": ModeFacts(
        browser="form",
        editable=False,
        typed=(TypedField(name="apiKey", label="API key", kind="password"),),
        imported_as="API_KEY",
        connections_post="import",
        never_refreshed=True,
    ),
    "APP_STORE": ModeFacts(browser="form", typed=_APP_STORE_FIELDS),
    # github-app-oauth: an installation with the user's authorization; it stores OAuth 2 or App credentials.
    "CUSTOM": ModeFacts(
        browser="popup",
        client=True,
        scopes=True,
        github_app=True,
        imported_as="OAUTH2",
        integration_credentials="custom",
        credentials_required=True,
        connections_post="refuse",
    ),
    "APP": ModeFacts(
        browser="popup",
        github_app=True,
        integration_credentials="app",
        credentials_required=True,
        quickstart=True,
        connections_post="refuse",
    ),
    "NONE": ModeFacts(browser="none", imported_as="NONE", connections_post="import", never_refreshed=True),
    # NetSuite token-based auth: the integration's client and the person's token sign each request;
    # the NetSuite account is the connection's params[accountId].
    "TBA": ModeFacts(
        browser="form",
        client=True,
        typed=(
            TypedField(name="token_id", label="Token id"),
            TypedField(name="token_secret", label="Token secret", kind="password"),
        ),
        imported_as="TBA",
        integration_credentials="oauth_client",
        connections_post="import",
        never_refreshed=True,
    ),
    # OAuth 2 against an MCP server's authorization server, PKCE always; the catalog names its
    # endpoints and how the client is identified (``client_registration``: dynamic, cimd or static,
    # the last one the integration's own client).
    "MCP_OAUTH2": ModeFacts(browser="popup", scopes=True, own_client=True),
    # The same, against any MCP server the person names (``params[mcp_server_url]``): its authorization
    # server discovered (RFC 9728, RFC 8414), the client registered or named by the metadata document.
    "MCP_OAUTH2_GENERIC": ModeFacts(browser="popup", own_client=True),
    # A JWT Keyway signs from what the person typed, as the template's ``token`` declares it; the
    # fields are the template's ``credentials`` (they differ by provider), the token is re-signed
    # before it expires.
    "JWT": ModeFacts(
        browser="form", editable=False, imported_as="JWT", token_protocols=frozenset({"RSA", "EC", "HMAC"})
    ),
    # A WSSE UsernameToken made from a user name and password (Emarsys), computed anew for each request.
    "SIGNATURE": ModeFacts(
        browser="form",
        editable=False,
        typed=(
            TypedField(name="username", label="User name"),
            TypedField(name="password", label="Password", kind="password"),
        ),
        imported_as="SIGNATURE",
        token_protocols=frozenset({"WSSE"}),
    ),
    # AWS: the person names an IAM role their account lets the integration's key assume (STS AssumeRole
    # with the connection's external id); the temporary key it gives signs each request (SigV4) and
    # is minted again before it expires. The integration holds the AWS service, the default region
    # and how STS is reached (its ``custom``: Nango's integration_config).
    "AWS_SIGV4": ModeFacts(
        browser="form",
        # The region is the template's connection_config field (params[region]), which the SDK's
        # credentials.region also fills.
        typed=(TypedField(name="role_arn", label="IAM role ARN"),),
        imported_as="AWS_SIGV4",  # a temporary key from elsewhere, renewed from its role
    ),
    # BILL (Bill.com Connect API): a login for a session id that expires after 35 minutes of
    # inactivity; the login is kept to sign in again, and the proxy sends the session and dev key.
    "BILL": ModeFacts(
        browser="form",
        editable=False,
        typed=(
            TypedField(name="username", label="User name"),
            TypedField(name="password", label="Password", kind="password"),
            TypedField(name="organization_id", label="Organization id"),
            TypedField(name="dev_key", label="Developer key", kind="password"),
        ),
        imported_as="BILL",  # the login (and a session, when there is one)
    ),
    # A marketplace plugin (Crisp's): the popup installs it from the integration's app link; every
    # connection calls with the plugin's own token (the integration's custom username and password).
    "INSTALL_PLUGIN": ModeFacts(browser="popup", plugin=True, imported_as="BASIC"),
    # A person's credentials (the template's ``credentials`` fields, which differ by provider) are
    # exchanged at the template's token request for a short-lived token, minted again before it
    # expires; POST /connections' schema has no such type.
    "TWO_STEP": ModeFacts(browser="form", editable=False, imported_as="TWO_STEP"),
}


def modes_where(fact: Callable[[ModeFacts], bool]) -> frozenset[AuthMode]:
    """The modes of which ``fact`` holds, e.g. ``modes_where(lambda f: f.browser == "popup")``."""
    return frozenset(mode for mode in AUTH_MODES if fact(MODE_FACTS[mode]))


def mode_named(name: object) -> AuthMode | None:
    """``name`` as a mode, when it is one: a wire body's ``type``, a stored ``auth_mode``."""
    return next((mode for mode in AUTH_MODES if mode == name), None)

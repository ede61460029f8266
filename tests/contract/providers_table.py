"""What each of the 30 most-used providers documents, one row each: the contract Keyway must meet.

Every expectation here comes from the provider's own documentation (cited per row) and, for what
Nango adds on top (the fields its post-connection scripts fill, its token quirks), from Nango's
source; never from Keyway's template. Where Keyway's template differs, the contract test fails.

URLs are the real ones: the fake (fake_provider.py) is reached through a rewritten copy of
Keyway's real template, and records each request under the real URL it was meant for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .fake_provider import Answer, Seen

CLIENT_ID = "contract-client-id"
CLIENT_SECRET = "contract-client-secret"
CODE = "documented-authorization-code"


@dataclass(frozen=True)
class Exchange:
    """A documented token request: where it goes, the fields it must carry, how the client authenticates."""

    url: str
    fields: Mapping[str, str]  # must be sent (form, JSON body or query string)
    client_auth: str = "either"  # "basic": Authorization: Basic id:secret | "body": id and secret fields | "either"
    answer: Mapping[str, Any] = field(default_factory=dict)
    basic_user_only: bool = False  # Stripe: Basic with the secret as the user name and no password


@dataclass(frozen=True)
class Proxied:
    """One documented endpoint: the path a caller gives the proxy and the upstream URL it must reach."""

    method: str
    endpoint: str
    upstream: str
    auth_header: tuple[str, str]  # (lower-case header name, exact value) the upstream must receive
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    answer: Any = field(default_factory=lambda: {"ok": True})


@dataclass(frozen=True)
class Row:
    name: str
    auth_mode: str
    docs: str
    params: Mapping[str, str] = field(default_factory=dict)  # connect's params[...] (connection config)
    credentials: Mapping[str, str] = field(default_factory=dict)  # API_KEY / BASIC / TBA bodies
    scopes: str = ""
    authorize_url: str = ""  # the documented consent page
    authorize_params: Mapping[str, str] = field(default_factory=dict)  # must be on the consent page's URL
    callback_extra: Mapping[str, str] = field(default_factory=dict)  # the provider adds these to the callback
    token: Exchange | None = None
    enrichment: tuple[Answer, ...] = ()  # documented answers to what post-connection calls
    connect_calls: tuple[tuple[str, str], ...] = ()  # (method, url) the connect must have made
    expected_config: Mapping[str, Any] = field(default_factory=dict)
    expires_in: int | None = None  # the access token's documented lifetime (None: it does not expire)
    refresh: Exchange | None = None
    proxy: Proxied | None = None
    tls_hosts: tuple[str, ...] = ()  # origins the provider names in its answers (served over HTTPS)
    integration: Mapping[str, Any] = field(default_factory=dict)
    extra_answers: tuple[Answer, ...] = ()

    @property
    def access_token(self) -> str:
        if self.auth_mode == "API_KEY":
            return self.credentials["apiKey"]
        if self.token is None:
            return ""
        return str(self.token.answer.get("access_token", self.token.answer.get("token", "")))

    @property
    def refreshed_token(self) -> str:
        if self.refresh is None:
            return ""
        return str(self.refresh.answer.get("access_token", self.refresh.answer.get("token", "")))


def _jwt(claims: Mapping[str, Any]) -> str:
    """A Microsoft-shaped access token (JWT) carrying ``claims``; nothing verifies its signature."""

    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'typ': 'JWT', 'alg': 'RS256', 'kid': 'contract'})}.{part(claims)}.c2lnbmF0dXJl"


def email_hash(address: str) -> str:
    """Nango's ``emailAddressHash``: SHA-256 of ``nango.emailAddressHash.v1:<trimmed lower-case address>``."""
    return hashlib.sha256(f"nango.emailAddressHash.v1:{address.strip().lower()}".encode()).hexdigest()


def _bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


def _basic(user: str, password: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def _code_fields(**extra: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": CODE, **extra}


def _refresh_fields(token: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token, **extra}


# --- Google (one OAuth server for Calendar, Gmail, Drive) -------------------------------------------
# https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code
# https://developers.google.com/identity/protocols/oauth2/web-server#offline
GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"


def _google(
    name: str, docs: str, scope: str, enrichment: tuple[Answer, ...], config: dict[str, Any], proxy: Proxied
) -> Row:
    return Row(
        name=name,
        auth_mode="OAUTH2",
        docs=docs,
        scopes=scope,
        authorize_url=GOOGLE_AUTHORIZE,
        authorize_params={"response_type": "code", "access_type": "offline", "client_id": CLIENT_ID},
        token=Exchange(
            GOOGLE_TOKEN,
            _code_fields(),
            client_auth="body",
            answer={
                "access_token": f"ya29.{name}-access",
                "expires_in": 3599,
                "refresh_token": f"1//{name}-refresh",
                "scope": scope,
                "token_type": "Bearer",
            },
        ),
        enrichment=enrichment,
        expected_config=config,
        expires_in=3599,
        refresh=Exchange(
            GOOGLE_TOKEN,
            _refresh_fields(f"1//{name}-refresh"),
            client_auth="body",
            answer={"access_token": f"ya29.{name}-renewed", "expires_in": 3599, "scope": scope, "token_type": "Bearer"},
        ),
        proxy=proxy,
    )


# --- Microsoft identity platform (Teams, Outlook, SharePoint through Graph) -------------------------
# https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#redeem-a-code-for-an-access-token
# https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token
MS_AUTHORIZE = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
MS_TOKEN = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
MS_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _microsoft(name: str, docs: str, scope: str, config: dict[str, Any], endpoint: str) -> Row:
    access = _jwt({"aud": "00000003-0000-0000-c000-000000000000", "tid": MS_TENANT, "oid": "contract-user"})
    renewed = _jwt({"aud": "00000003-0000-0000-c000-000000000000", "tid": MS_TENANT, "oid": "renewed"})
    return Row(
        name=name,
        auth_mode="OAUTH2",
        docs=docs,
        scopes=scope,
        authorize_url=MS_AUTHORIZE,
        authorize_params={"response_type": "code", "client_id": CLIENT_ID, "response_mode": "query"},
        token=Exchange(
            MS_TOKEN,
            _code_fields(),
            client_auth="body",
            answer={
                "token_type": "Bearer",
                "scope": scope,
                "expires_in": 3736,
                "access_token": access,
                "refresh_token": f"{name}-refresh",
            },
        ),
        expected_config=config,
        expires_in=3736,
        refresh=Exchange(
            MS_TOKEN,
            _refresh_fields(f"{name}-refresh"),
            client_auth="body",
            answer={
                "token_type": "Bearer",
                "scope": scope,
                "expires_in": 3736,
                "access_token": renewed,
                "refresh_token": f"{name}-refresh-2",
            },
        ),
        # the documented Graph endpoint, reached with the token as a bearer
        proxy=Proxied("GET", endpoint, f"https://graph.microsoft.com{endpoint}", _bearer(access)),
    )


# --- Atlassian (Jira, Confluence): OAuth 2.0 (3LO) -------------------------------------------------
# https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/
ATLASSIAN_TOKEN = "https://auth.atlassian.com/oauth/token"
CLOUD_ID = "1324a887-45db-1bf4-1e99-ef0ff456d421"
ACCOUNT_ID = "5b10a2844c20165700ede21g"


def _atlassian(name: str, docs: str, scopes: list[str], me_url: str, proxy: Proxied) -> Row:
    return Row(
        name=name,
        auth_mode="OAUTH2",
        docs=docs,
        scopes=",".join(scopes),
        authorize_url="https://auth.atlassian.com/authorize",
        authorize_params={"audience": "api.atlassian.com", "response_type": "code", "prompt": "consent"},
        token=Exchange(
            ATLASSIAN_TOKEN,
            _code_fields(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": f"{name}-access",
                "expires_in": 3600,
                "scope": " ".join(scopes),
                "refresh_token": f"{name}-refresh",
                "token_type": "Bearer",
            },
        ),
        # https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/#3-1-get-the-cloudid-for-your-site
        enrichment=(
            Answer(
                "GET",
                "https://api.atlassian.com/oauth/token/accessible-resources",
                [
                    {
                        "id": CLOUD_ID,
                        "name": "your-domain",
                        "url": "https://your-domain.atlassian.net",
                        "scopes": scopes,
                        "avatarUrl": "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/flag.png",
                    }
                ],
            ),
            Answer("GET", me_url, {"accountId": ACCOUNT_ID, "accountType": "atlassian", "displayName": "Mia"}),
        ),
        expected_config={"cloudId": CLOUD_ID, "baseUrl": "https://your-domain.atlassian.net", "accountId": ACCOUNT_ID},
        expires_in=3600,
        # Rotating refresh tokens: https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/#how-do-i-get-a-new-access-token--if-my-access-token-expires-or-is-revoked-
        refresh=Exchange(
            ATLASSIAN_TOKEN,
            _refresh_fields(f"{name}-refresh", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": f"{name}-renewed",
                "expires_in": 3600,
                "scope": " ".join(scopes),
                "refresh_token": f"{name}-refresh-2",
                "token_type": "Bearer",
            },
        ),
        proxy=proxy,
    )


def _installation(seen: Seen, history: list[Seen]) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "id": 38631545,
        "app_id": 314159,
        "account": {"login": "octo-org", "id": 1, "type": "Organization"},
        "created_at": stamp,
        "updated_at": stamp,
    }


def _installation_token(prefix: str) -> Any:
    """GitHub's 201 answer: a new token (``ghs_<prefix>1``, then ``2``...) living one hour."""

    def answer(seen: Seen, history: list[Seen]) -> dict[str, Any]:
        expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        calls = sum(1 for s in history if s.url == seen.url and s.method == "POST")
        return {
            "token": f"ghs_{prefix}{calls}",
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "permissions": {"issues": "write", "contents": "read"},
            "repository_selection": "selected",
        }

    return answer


SALESFORCE_INSTANCE = "https://acme.my.salesforce.com"
GONG_API = "https://us-4467.api.gong.io"
NETSUITE_ACCOUNT = "tstdrv231585"


def _salesforce_introspection(seen: Seen, history: list[Seen]) -> dict[str, Any]:
    return {"active": True, "scope": "api refresh_token", "client_id": CLIENT_ID, "exp": int(time.time()) + 7200}


ROWS: list[Row] = [
    # https://airtable.com/developers/web/api/oauth-reference
    Row(
        name="airtable",
        auth_mode="OAUTH2",
        docs="https://airtable.com/developers/web/api/oauth-reference",
        scopes="data.records:read schema.bases:read",
        authorize_url="https://airtable.com/oauth2/v1/authorize",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID, "code_challenge_method": "S256"},
        token=Exchange(
            "https://airtable.com/oauth2/v1/token",
            _code_fields(),
            client_auth="basic",
            answer={
                "access_token": "airtable-access",
                "refresh_token": "airtable-refresh",
                "token_type": "Bearer",
                "scope": "data.records:read schema.bases:read",
                "expires_in": 3600,
                "refresh_expires_in": 5184000,
            },
        ),
        expires_in=3600,
        refresh=Exchange(
            "https://airtable.com/oauth2/v1/token",
            _refresh_fields("airtable-refresh"),
            client_auth="basic",
            answer={
                "access_token": "airtable-renewed",
                "refresh_token": "airtable-refresh-2",
                "token_type": "Bearer",
                "scope": "data.records:read schema.bases:read",
                "expires_in": 3600,
                "refresh_expires_in": 5184000,
            },
        ),
        # https://airtable.com/developers/web/api/get-user-id-scopes
        proxy=Proxied("GET", "/v0/meta/whoami", "https://api.airtable.com/v0/meta/whoami", _bearer("airtable-access")),
    ),
    # https://docs.anthropic.com/en/api/overview#authentication and https://docs.anthropic.com/en/api/models-list
    Row(
        name="anthropic",
        auth_mode="API_KEY",
        docs="https://docs.anthropic.com/en/api/overview",
        credentials={"apiKey": "sk-ant-api03-contract"},
        enrichment=(Answer("GET", "https://api.anthropic.com/v1/models", {"data": [], "has_more": False}),),
        connect_calls=(("GET", "https://api.anthropic.com/v1/models"),),
        proxy=Proxied(
            "POST",
            "/v1/messages",
            "https://api.anthropic.com/v1/messages",
            ("x-api-key", "sk-ant-api03-contract"),
            extra_headers={"anthropic-version": "2023-06-01"},
        ),
    ),
    # https://developers.ashbyhq.com/reference/authentication (Basic: the API key as user name, no password)
    Row(
        name="ashby",
        auth_mode="BASIC",
        docs="https://developers.ashbyhq.com/reference/authentication",
        credentials={"username": "ashby-api-key", "password": ""},
        # https://developers.ashbyhq.com/reference/apikeyinfo
        enrichment=(Answer("POST", "https://api.ashbyhq.com/apiKey.info", {"success": True, "results": {}}),),
        connect_calls=(("POST", "https://api.ashbyhq.com/apiKey.info"),),
        # https://developers.ashbyhq.com/reference/candidatelist
        proxy=Proxied("POST", "/candidate.list", "https://api.ashbyhq.com/candidate.list", _basic("ashby-api-key", "")),
    ),
    # https://docs.attio.com/rest-api/guides/authentication (OAuth: tokens do not expire)
    Row(
        name="attio",
        auth_mode="OAUTH2",
        docs="https://docs.attio.com/rest-api/guides/authentication",
        scopes="record_permission:read",
        authorize_url="https://app.attio.com/authorize",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID},
        token=Exchange(
            "https://app.attio.com/oauth/token",
            _code_fields(),
            answer={"access_token": "attio-access", "token_type": "Bearer"},
        ),
        # https://docs.attio.com/rest-api/endpoint-reference/meta/identify (Nango's attio post-connection)
        enrichment=(
            Answer(
                "GET",
                "https://api.attio.com/v2/self",
                {"active": True, "workspace_id": "14beef7a-99f7-4534-a87e-70b564330a4c", "workspace_slug": "acme"},
            ),
        ),
        expected_config={"workspace_id": "14beef7a-99f7-4534-a87e-70b564330a4c"},
        # https://docs.attio.com/rest-api/endpoint-reference/objects/list-objects
        proxy=Proxied("GET", "/v2/objects", "https://api.attio.com/v2/objects", _bearer("attio-access")),
    ),
    # https://developer.atlassian.com/cloud/confluence/oauth-2-3lo-apps/
    _atlassian(
        "confluence",
        "https://developer.atlassian.com/cloud/confluence/oauth-2-3lo-apps/",
        ["read:confluence-content.all", "read:confluence-user", "offline_access"],
        # https://developer.atlassian.com/cloud/confluence/rest/v1/api-group-users/#api-wiki-rest-api-user-current-get
        f"https://api.atlassian.com/ex/confluence/{CLOUD_ID}/wiki/rest/api/user/current",
        # https://developer.atlassian.com/cloud/confluence/rest/v2/api-group-space/#api-spaces-get
        Proxied(
            "GET",
            f"/ex/confluence/{CLOUD_ID}/wiki/api/v2/spaces",
            f"https://api.atlassian.com/ex/confluence/{CLOUD_ID}/wiki/api/v2/spaces",
            _bearer("confluence-access"),
        ),
    ),
    # https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation
    # https://docs.github.com/en/apps/creating-github-apps/about-creating-github-apps/about-the-setup-url
    Row(
        name="github-app",
        auth_mode="APP",
        docs="https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation",
        authorize_url="https://github.com/apps/keyway-contract/installations/new",
        callback_extra={"installation_id": "38631545", "setup_action": "install"},
        token=Exchange(
            "https://api.github.com/app/installations/38631545/access_tokens",
            {},
            client_auth="jwt",
            answer={"token": "ghs_contract1"},
        ),
        # https://docs.github.com/en/rest/apps/apps#get-an-installation-for-the-authenticated-app
        extra_answers=(
            Answer("GET", "https://api.github.com/app/installations/38631545", _installation),
            Answer(
                "POST",
                "https://api.github.com/app/installations/38631545/access_tokens",
                _installation_token("contract"),
                status=201,
            ),
        ),
        expected_config={"installation_id": "38631545", "app_id": "314159"},
        expires_in=3600,
        refresh=Exchange(
            "https://api.github.com/app/installations/38631545/access_tokens",
            {},
            client_auth="jwt",
            answer={"token": "ghs_contract2"},
        ),
        # https://docs.github.com/en/rest/apps/installations#list-repositories-accessible-to-the-app-installation
        proxy=Proxied(
            "GET",
            "/installation/repositories",
            "https://api.github.com/installation/repositories",
            ("authorization", "Bearer ghs_contract1"),
        ),
        integration={"oauth_client_id": "314159", "app_link": "https://github.com/apps/keyway-contract"},
    ),
    # https://help.gong.io/docs/create-an-app-for-gong (token request in the query, Basic client auth;
    # the answer names the customer's API base URL, which every API call must use)
    Row(
        name="gong-oauth",
        auth_mode="OAUTH2",
        docs="https://help.gong.io/docs/create-an-app-for-gong",
        scopes="api:users:read api:calls:read:basic",
        authorize_url="https://app.gong.io/oauth2/authorize",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID},
        token=Exchange(
            "https://app.gong.io/oauth2/generate-customer-token",
            _code_fields(client_id=CLIENT_ID),
            client_auth="basic",
            answer={
                "access_token": "gong-access",
                "refresh_token": "gong-refresh",
                "scope": "api:users:read api:calls:read:basic",
                "token_type": "bearer",
                "expires_in": 86400,
                "api_base_url_for_customer": GONG_API,
            },
        ),
        expected_config={"api_base_url_for_customer": GONG_API},
        expires_in=86400,
        refresh=Exchange(
            "https://app.gong.io/oauth2/generate-customer-token",
            _refresh_fields("gong-refresh"),
            client_auth="basic",
            answer={
                "access_token": "gong-renewed",
                "refresh_token": "gong-refresh-2",
                "token_type": "bearer",
                "expires_in": 86400,
                "api_base_url_for_customer": GONG_API,
            },
        ),
        # https://gong.app.gong.io/settings/api/documentation#get-/v2/users
        proxy=Proxied("GET", "/v2/users", f"{GONG_API}/v2/users", _bearer("gong-access")),
        tls_hosts=("us-4467.api.gong.io",),
    ),
    # https://developers.google.com/calendar/api/v3/reference/calendarList/get
    _google(
        "google-calendar",
        "https://developers.google.com/calendar/api/guides/auth",
        "https://www.googleapis.com/auth/calendar.readonly",
        (
            Answer(
                "GET",
                "https://www.googleapis.com/calendar/v3/users/me/calendarList/primary",
                {"kind": "calendar#calendarListEntry", "id": "Jane.Doe@example.com", "primary": True},
            ),
        ),
        {"emailAddressHash": email_hash("Jane.Doe@example.com")},
        # https://developers.google.com/calendar/api/v3/reference/events/list
        Proxied(
            "GET",
            "/calendar/v3/calendars/primary/events",
            "https://www.googleapis.com/calendar/v3/calendars/primary/events",
            _bearer("ya29.google-calendar-access"),
        ),
    ),
    # https://developers.google.com/gmail/api/reference/rest/v1/users/getProfile
    _google(
        "google-mail",
        "https://developers.google.com/gmail/api/auth/web-server",
        "https://www.googleapis.com/auth/gmail.readonly",
        (
            Answer(
                "GET",
                "https://gmail.googleapis.com/gmail/v1/users/me/profile",
                {"emailAddress": "Jane.Doe@example.com", "messagesTotal": 10, "threadsTotal": 7, "historyId": "1"},
            ),
        ),
        {"emailAddressHash": email_hash("Jane.Doe@example.com")},
        # https://developers.google.com/gmail/api/reference/rest/v1/users.messages/list
        Proxied(
            "GET",
            "/gmail/v1/users/me/messages",
            "https://gmail.googleapis.com/gmail/v1/users/me/messages",
            _bearer("ya29.google-mail-access"),
        ),
    ),
    # https://developers.google.com/drive/api/reference/rest/v3/files/list
    _google(
        "google-drive",
        "https://developers.google.com/drive/api/guides/api-specific-auth",
        "https://www.googleapis.com/auth/drive.readonly",
        (),
        {},
        Proxied(
            "GET", "/drive/v3/files", "https://www.googleapis.com/drive/v3/files", _bearer("ya29.google-drive-access")
        ),
    ),
    # https://apidocs.hibob.com/docs/api-service-users (Basic: service user ID and token)
    Row(
        name="hibob-service-user",
        auth_mode="BASIC",
        docs="https://apidocs.hibob.com/docs/api-service-users",
        credentials={"username": "SERVICE-1234", "password": "hibob-token"},
        # https://apidocs.hibob.com/reference/get_company-named-lists
        enrichment=(Answer("GET", "https://api.hibob.com/v1/company/named-lists", {}),),
        connect_calls=(("GET", "https://api.hibob.com/v1/company/named-lists"),),
        # https://apidocs.hibob.com/reference/post_people-search
        proxy=Proxied(
            "POST", "/v1/people/search", "https://api.hibob.com/v1/people/search", _basic("SERVICE-1234", "hibob-token")
        ),
    ),
    # https://developers.hubspot.com/docs/api/oauth-quickstart-guide
    Row(
        name="hubspot",
        auth_mode="OAUTH2",
        docs="https://developers.hubspot.com/docs/api/oauth-quickstart-guide",
        scopes="crm.objects.contacts.read oauth",
        authorize_url="https://app.hubspot.com/oauth/authorize",
        authorize_params={"client_id": CLIENT_ID},
        token=Exchange(
            "https://api.hubapi.com/oauth/v1/token",
            _code_fields(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "token_type": "bearer",
                "refresh_token": "hubspot-refresh",
                "access_token": "hubspot-access",
                "expires_in": 1800,
            },
        ),
        # https://developers.hubspot.com/docs/api/settings/account-information-api (Nango's hubspot post-connection)
        enrichment=(
            Answer(
                "GET",
                "https://api.hubapi.com/account-info/v3/details",
                {"portalId": 62515, "timeZone": "US/Eastern", "companyCurrency": "USD", "uiDomain": "app.hubspot.com"},
            ),
        ),
        expected_config={"portalId": 62515},
        expires_in=1800,
        refresh=Exchange(
            "https://api.hubapi.com/oauth/v1/token",
            _refresh_fields("hubspot-refresh", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "token_type": "bearer",
                "refresh_token": "hubspot-refresh",
                "access_token": "hubspot-renewed",
                "expires_in": 1800,
            },
        ),
        # https://developers.hubspot.com/docs/api/crm/contacts
        proxy=Proxied(
            "GET",
            "/crm/v3/objects/contacts",
            "https://api.hubapi.com/crm/v3/objects/contacts",
            _bearer("hubspot-access"),
        ),
    ),
    # https://developers.intercom.com/docs/build-an-integration/learn-more/authentication/setting-up-oauth
    # (tokens do not expire; there is no refresh token)
    Row(
        name="intercom",
        auth_mode="OAUTH2",
        docs="https://developers.intercom.com/docs/build-an-integration/learn-more/authentication/setting-up-oauth",
        authorize_url="https://app.intercom.com/oauth",
        authorize_params={"client_id": CLIENT_ID},
        token=Exchange(
            "https://api.intercom.io/auth/eagle/token",
            {"code": CODE, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            client_auth="body",
            answer={"token_type": "Bearer", "token": "intercom-access", "access_token": "intercom-access"},
        ),
        # https://developers.intercom.com/docs/references/rest-api/api.intercom.io/admins/identifyadmin
        proxy=Proxied("GET", "/me", "https://api.intercom.io/me", _bearer("intercom-access")),
    ),
    # https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/
    _atlassian(
        "jira",
        "https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/",
        ["read:jira-user", "read:jira-work", "offline_access"],
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-myself/#api-rest-api-3-myself-get
        f"https://api.atlassian.com/ex/jira/{CLOUD_ID}/rest/api/3/myself",
        Proxied(
            "GET",
            f"/ex/jira/{CLOUD_ID}/rest/api/3/myself",
            f"https://api.atlassian.com/ex/jira/{CLOUD_ID}/rest/api/3/myself",
            _bearer("jira-access"),
        ),
    ),
    # https://linear.app/developers/oauth-2-0-authentication (access tokens live 24 h, with a refresh token)
    Row(
        name="linear",
        auth_mode="OAUTH2",
        docs="https://linear.app/developers/oauth-2-0-authentication",
        scopes="read,write",
        authorize_url="https://linear.app/oauth/authorize",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID, "scope": "read,write"},
        token=Exchange(
            "https://api.linear.app/oauth/token",
            _code_fields(),
            answer={
                "access_token": "lin_oauth_access",
                "token_type": "Bearer",
                "expires_in": 86399,
                "scope": "read write",
                "refresh_token": "lin_refresh",
            },
        ),
        # https://linear.app/developers/graphql (Nango's linear post-connection: organization { id })
        enrichment=(
            Answer(
                "POST",
                "https://api.linear.app/graphql",
                {"data": {"organization": {"id": "8f7b2c4e-0000-4000-8000-000000000001"}}},
            ),
        ),
        expected_config={"organizationId": "8f7b2c4e-0000-4000-8000-000000000001"},
        expires_in=86399,
        refresh=Exchange(
            "https://api.linear.app/oauth/token",
            _refresh_fields("lin_refresh"),
            answer={
                "access_token": "lin_oauth_renewed",
                "token_type": "Bearer",
                "expires_in": 86399,
                "scope": "read write",
                "refresh_token": "lin_refresh_2",
            },
        ),
        proxy=Proxied("POST", "/graphql", "https://api.linear.app/graphql", _bearer("lin_oauth_access")),
    ),
    # https://learn.microsoft.com/en-us/graph/api/user-list-joinedteams (tenantId: the token's tid, as Nango)
    _microsoft(
        "microsoft-teams",
        "https://learn.microsoft.com/en-us/graph/api/resources/teams-api-overview",
        "offline_access Team.ReadBasic.All",
        {"tenantId": MS_TENANT},
        "/v1.0/me/joinedTeams",
    ),
    # https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_1540391670.html (TBA, OAuth 1.0a
    # HMAC-SHA256 with the account ID as realm) and the REST record service:
    # https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_157373386674.html
    Row(
        name="netsuite-tba",
        auth_mode="TBA",
        docs="https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_4247337262.html",
        params={"accountId": NETSUITE_ACCOUNT},
        credentials={"token_id": "ns-token-id", "token_secret": "ns-token-secret"},
        expected_config={"accountId": NETSUITE_ACCOUNT},
        proxy=Proxied(
            "GET",
            "/customer",
            f"https://{NETSUITE_ACCOUNT}.suitetalk.api.netsuite.com/services/rest/record/v1/customer",
            ("authorization", 'OAuth realm="TSTDRV231585"'),
        ),
    ),
    # https://developers.notion.com/docs/authorization (JSON body, Basic client auth; the answer names
    # the workspace, which Nango keeps as connection config: token_response_metadata workspace_id)
    Row(
        name="notion",
        auth_mode="OAUTH2",
        docs="https://developers.notion.com/docs/authorization",
        authorize_url="https://api.notion.com/v1/oauth/authorize",
        authorize_params={"owner": "user", "response_type": "code", "client_id": CLIENT_ID},
        token=Exchange(
            "https://api.notion.com/v1/oauth/token",
            _code_fields(),
            client_auth="basic",
            answer={
                "access_token": "ntn_contract",
                "token_type": "bearer",
                "bot_id": "b3414d659-1224-5ty7-6ffr-cc9d8773drt601288f",
                "workspace_name": "Acme",
                "workspace_icon": "https://example.com/icon.png",
                "workspace_id": "j565j4d7x3-ntn8-1dk8-49n7-f6a12gr43",
                "owner": {"type": "user", "user": {"object": "user", "id": "a2f2b11c"}},
                "duplicated_template_id": None,
                "request_id": "f3c42b2a-0000-4000-8000-000000000001",
            },
        ),
        expected_config={"workspace_id": "j565j4d7x3-ntn8-1dk8-49n7-f6a12gr43"},
        # https://developers.notion.com/reference/post-search (Notion-Version is required)
        proxy=Proxied(
            "POST",
            "/v1/search",
            "https://api.notion.com/v1/search",
            _bearer("ntn_contract"),
            extra_headers={"notion-version": "2022-06-28"},
        ),
    ),
    # https://platform.openai.com/docs/api-reference/authentication
    Row(
        name="openai",
        auth_mode="API_KEY",
        docs="https://platform.openai.com/docs/api-reference/authentication",
        credentials={"apiKey": "sk-proj-contract"},
        # https://platform.openai.com/docs/api-reference/models/list
        enrichment=(Answer("GET", "https://api.openai.com/v1/models", {"object": "list", "data": []}),),
        connect_calls=(("GET", "https://api.openai.com/v1/models"),),
        # https://platform.openai.com/docs/api-reference/chat/create
        proxy=Proxied(
            "POST", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions", _bearer("sk-proj-contract")
        ),
    ),
    # https://learn.microsoft.com/en-us/graph/api/user-list-messages
    _microsoft(
        "outlook",
        "https://learn.microsoft.com/en-us/graph/api/resources/mail-api-overview",
        "offline_access Mail.Read",
        {},
        "/v1.0/me/messages",
    ),
    # https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0
    # (the callback carries realmId; Basic client auth; access tokens live an hour)
    Row(
        name="quickbooks",
        auth_mode="OAUTH2",
        docs="https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0",
        scopes="com.intuit.quickbooks.accounting",
        authorize_url="https://appcenter.intuit.com/connect/oauth2",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID, "scope": "com.intuit.quickbooks.accounting"},
        callback_extra={"realmId": "9130347596764436"},
        token=Exchange(
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
            _code_fields(),
            client_auth="either",  # documented as Basic; the RFC 6749 body form is accepted too (Nango sends it)
            answer={
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "AB11-quickbooks-refresh",
                "x_refresh_token_expires_in": 8726400,
                "access_token": "eyJ-quickbooks-access",
            },
        ),
        expected_config={"realmId": "9130347596764436"},
        expires_in=3600,
        refresh=Exchange(
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
            _refresh_fields("AB11-quickbooks-refresh"),
            client_auth="either",
            answer={
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "AB11-quickbooks-refresh-2",
                "x_refresh_token_expires_in": 8726400,
                "access_token": "eyJ-quickbooks-renewed",
            },
        ),
        # https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/companyinfo
        proxy=Proxied(
            "GET",
            "/v3/company/9130347596764436/companyinfo/9130347596764436",
            "https://quickbooks.api.intuit.com/v3/company/9130347596764436/companyinfo/9130347596764436",
            _bearer("eyJ-quickbooks-access"),
        ),
    ),
    # https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm
    # (the answer has no expires_in: Nango introspects the token at {instance_url}/services/oauth2/introspect)
    Row(
        name="salesforce",
        auth_mode="OAUTH2",
        docs="https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm",
        scopes="api refresh_token",
        authorize_url="https://login.salesforce.com/services/oauth2/authorize",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID},
        token=Exchange(
            "https://login.salesforce.com/services/oauth2/token",
            _code_fields(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": "00Dxx0000001gPL!salesforce-access",
                "signature": "d/SxeYBxH0GSVko0HMgcUxuZy0PA2cDDz1u7g7JtDHw=",
                "scope": "api refresh_token",
                "instance_url": SALESFORCE_INSTANCE,
                "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS",
                "token_type": "Bearer",
                "issued_at": "1278448832702",
                "refresh_token": "5Aep861KIwKdekr90I4iHdtDgWwRoG7O",
            },
        ),
        expected_config={"instance_url": SALESFORCE_INSTANCE},
        refresh=Exchange(
            "https://login.salesforce.com/services/oauth2/token",
            _refresh_fields("5Aep861KIwKdekr90I4iHdtDgWwRoG7O", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": "00Dxx0000001gPL!salesforce-renewed",
                "signature": "SSSbLO/gBhmmyNUvN18ODBDFYHzakxOMgqYtu+hDPsc=",
                "scope": "api refresh_token",
                "instance_url": SALESFORCE_INSTANCE,
                "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS",
                "token_type": "Bearer",
                "issued_at": "1278448832702",
            },
        ),
        # https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_describeGlobal.htm
        proxy=Proxied(
            "GET",
            "/services/data/v60.0/sobjects",
            f"{SALESFORCE_INSTANCE}/services/data/v60.0/sobjects",
            _bearer("00Dxx0000001gPL!salesforce-access"),
        ),
        tls_hosts=("acme.my.salesforce.com",),
        # https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oidc_token_introspection_endpoint.htm
        extra_answers=(Answer("POST", f"{SALESFORCE_INSTANCE}/services/oauth2/introspect", _salesforce_introspection),),
    ),
    # https://www.servicenow.com/docs/bundle/xanadu-platform-security/page/administer/security/concept/c_OAuthAuthorizationCodeFlow.html
    Row(
        name="servicenow",
        auth_mode="OAUTH2",
        docs="https://www.servicenow.com/docs/bundle/xanadu-platform-security/page/administer/security/concept/c_OAuthAuthorizationCodeFlow.html",
        params={"subdomain": "dev12345"},
        authorize_url="https://dev12345.service-now.com/oauth_auth.do",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID},
        token=Exchange(
            "https://dev12345.service-now.com/oauth_token.do",
            _code_fields(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": "servicenow-access",
                "refresh_token": "servicenow-refresh",
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": 1799,
            },
        ),
        expected_config={"subdomain": "dev12345"},
        expires_in=1799,
        refresh=Exchange(
            "https://dev12345.service-now.com/oauth_token.do",
            _refresh_fields("servicenow-refresh", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": "servicenow-renewed",
                "refresh_token": "servicenow-refresh-2",
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": 1799,
            },
        ),
        # https://developer.servicenow.com/dev.do#!/reference/api/xanadu/rest/c_TableAPI
        proxy=Proxied(
            "GET",
            "/api/now/table/incident",
            "https://dev12345.service-now.com/api/now/table/incident",
            _bearer("servicenow-access"),
        ),
    ),
    # https://learn.microsoft.com/en-us/graph/api/site-search (tenantId: the token's tid, as Nango's post-connection)
    _microsoft(
        "sharepoint-online",
        "https://learn.microsoft.com/en-us/graph/api/resources/sharepoint",
        "offline_access Sites.Read.All",
        {"tenantId": MS_TENANT},
        "/v1.0/sites",
    ),
    # https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
    # https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/offline-access-tokens
    # (expiring offline tokens: expiring=1 on the exchange, an hour's token, a refresh token)
    Row(
        name="shopify",
        auth_mode="OAUTH2",
        docs="https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant",
        params={"subdomain": "acme"},
        scopes="read_products,read_orders",
        authorize_url="https://acme.myshopify.com/admin/oauth/authorize",
        authorize_params={"client_id": CLIENT_ID, "scope": "read_products,read_orders"},
        token=Exchange(
            "https://acme.myshopify.com/admin/oauth/access_token",
            {"code": CODE, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "expiring": "1"},
            client_auth="body",
            answer={
                "access_token": "shpat_contract",
                "scope": "read_products,read_orders",
                "expires_in": 3600,
                "refresh_token": "shprt_contract",
                "refresh_token_expires_in": 7776000,
            },
        ),
        expected_config={"subdomain": "acme"},
        expires_in=3600,
        refresh=Exchange(
            "https://acme.myshopify.com/admin/oauth/access_token",
            _refresh_fields("shprt_contract", client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            client_auth="body",
            answer={
                "access_token": "shpat_renewed",
                "scope": "read_products,read_orders",
                "expires_in": 3600,
                "refresh_token": "shprt_contract_2",
                "refresh_token_expires_in": 7776000,
            },
        ),
        # https://shopify.dev/docs/api/admin-rest/2025-01/resources/shop
        proxy=Proxied(
            "GET",
            "/admin/api/2025-01/shop.json",
            "https://acme.myshopify.com/admin/api/2025-01/shop.json",
            ("x-shopify-access-token", "shpat_contract"),
        ),
    ),
    # https://api.slack.com/authentication/oauth-v2#exchanging and https://api.slack.com/authentication/rotation
    Row(
        name="slack",
        auth_mode="OAUTH2",
        docs="https://api.slack.com/authentication/oauth-v2",
        scopes="channels:read,chat:write",
        authorize_url="https://slack.com/oauth/v2/authorize",
        authorize_params={"client_id": CLIENT_ID, "scope": "channels:read,chat:write"},
        token=Exchange(
            "https://slack.com/api/oauth.v2.access",
            {"code": CODE},
            answer={
                "ok": True,
                "access_token": "xoxe.xoxb-1-contract",
                "token_type": "bot",
                "scope": "channels:read,chat:write",
                "bot_user_id": "U0KRQLJ9H",
                "app_id": "A0KRD7HC3",
                "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
                "enterprise": None,
                "authed_user": {
                    "id": "U1234",
                    "scope": "chat:write",
                    "access_token": "xoxp-1-user",
                    "token_type": "user",
                },
                "expires_in": 43200,
                "refresh_token": "xoxe-1-contract",
            },
        ),
        expected_config={"bot_user_id": "U0KRQLJ9H", "team.id": "T9TK3CUKW"},
        expires_in=43200,
        refresh=Exchange(
            "https://slack.com/api/oauth.v2.access",
            _refresh_fields("xoxe-1-contract"),
            answer={
                "ok": True,
                "access_token": "xoxe.xoxb-1-renewed",
                "token_type": "bot",
                "scope": "channels:read,chat:write",
                "bot_user_id": "U0KRQLJ9H",
                "app_id": "A0KRD7HC3",
                "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
                "enterprise": None,
                "expires_in": 43200,
                "refresh_token": "xoxe-1-contract-2",
            },
        ),
        # https://api.slack.com/methods/conversations.list
        proxy=Proxied(
            "GET", "/conversations.list", "https://slack.com/api/conversations.list", _bearer("xoxe.xoxb-1-contract")
        ),
    ),
    # https://docs.stripe.com/stripe-apps/api-authentication/oauth (Basic with the secret key as user
    # name; access tokens expire after one hour, refresh tokens rotate)
    Row(
        name="stripe-app",
        auth_mode="OAUTH2",
        docs="https://docs.stripe.com/stripe-apps/api-authentication/oauth",
        authorize_url="https://marketplace.stripe.com/oauth/v2/authorize",
        authorize_params={"client_id": CLIENT_ID},
        token=Exchange(
            "https://api.stripe.com/v1/oauth/token",
            _code_fields(),
            client_auth="basic",
            basic_user_only=True,
            answer={
                "access_token": "sk_test_stripe_access",
                "livemode": False,
                "refresh_token": "rt_stripe_refresh",
                "scope": "stripe_apps",
                "stripe_publishable_key": "pk_test_contract",
                "stripe_user_id": "acct_1032D82eZvKYlo2C",
                "token_type": "bearer",
            },
        ),
        expires_in=3600,
        refresh=Exchange(
            "https://api.stripe.com/v1/oauth/token",
            _refresh_fields("rt_stripe_refresh"),
            client_auth="basic",
            basic_user_only=True,
            answer={
                "access_token": "sk_test_stripe_renewed",
                "livemode": False,
                "refresh_token": "rt_stripe_refresh_2",
                "scope": "stripe_apps",
                "stripe_publishable_key": "pk_test_contract",
                "stripe_user_id": "acct_1032D82eZvKYlo2C",
                "token_type": "bearer",
            },
        ),
        # https://docs.stripe.com/api/customers/list
        proxy=Proxied("GET", "/v1/customers", "https://api.stripe.com/v1/customers", _bearer("sk_test_stripe_access")),
    ),
    # https://developer.xero.com/documentation/guides/oauth2/auth-flow (Basic client auth; 30-minute tokens;
    # the tenant comes from GET /connections)
    Row(
        name="xero",
        auth_mode="OAUTH2",
        docs="https://developer.xero.com/documentation/guides/oauth2/auth-flow",
        scopes="offline_access openid accounting.transactions",
        authorize_url="https://login.xero.com/identity/connect/authorize",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID},
        token=Exchange(
            "https://identity.xero.com/connect/token",
            _code_fields(),
            client_auth="either",  # documented as Basic; the RFC 6749 body form is accepted too (Nango sends it)
            answer={
                "id_token": "xero-id-token",
                "access_token": "xero-access",
                "expires_in": 1800,
                "token_type": "Bearer",
                "refresh_token": "xero-refresh",
                "scope": "offline_access openid accounting.transactions",
            },
        ),
        # https://developer.xero.com/documentation/guides/oauth2/auth-flow#5-check-the-tenants-youre-authorized-to-access
        enrichment=(
            Answer(
                "GET",
                "https://api.xero.com/connections",
                [
                    {
                        "id": "e1eede29-f875-4a5d-8470-17f6a29a88b1",
                        "authEventId": "d99ecdfe-391d-43d2-b834-17636ba90e8d",
                        "tenantId": "70784a63-d24b-46a9-a4db-0e70a274b056",
                        "tenantType": "ORGANISATION",
                        "tenantName": "Maple Florist",
                        "createdDateUtc": "2019-07-09T23:40:30.1833130",
                        "updatedDateUtc": "2020-05-15T01:35:13.8491980",
                    }
                ],
            ),
        ),
        expected_config={"tenant_id": "70784a63-d24b-46a9-a4db-0e70a274b056"},
        expires_in=1800,
        refresh=Exchange(
            "https://identity.xero.com/connect/token",
            _refresh_fields("xero-refresh"),
            client_auth="either",
            answer={
                "id_token": "xero-id-token",
                "access_token": "xero-renewed",
                "expires_in": 1800,
                "token_type": "Bearer",
                "refresh_token": "xero-refresh-2",
                "scope": "offline_access openid accounting.transactions",
            },
        ),
        # https://developer.xero.com/documentation/api/accounting/invoices
        proxy=Proxied(
            "GET", "/api.xro/2.0/Invoices", "https://api.xero.com/api.xro/2.0/Invoices", _bearer("xero-access")
        ),
    ),
    # https://developer.zendesk.com/api-reference/ticketing/oauth/grant_type_tokens/ and
    # https://support.zendesk.com/hc/en-us/articles/4408845965210 (refresh tokens: the client asks for an
    # access-token lifetime with expires_in; Nango asks for 1800 s on both grants)
    Row(
        name="zendesk",
        auth_mode="OAUTH2",
        docs="https://developer.zendesk.com/api-reference/ticketing/oauth/grant_type_tokens/",
        params={"subdomain": "acme"},
        scopes="read",
        authorize_url="https://acme.zendesk.com/oauth/authorizations/new",
        authorize_params={"response_type": "code", "client_id": CLIENT_ID, "scope": "read"},
        token=Exchange(
            "https://acme.zendesk.com/oauth/tokens",
            _code_fields(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, expires_in="1800"),
            client_auth="body",
            answer={
                "access_token": "zendesk-access",
                "token_type": "bearer",
                "scope": "read",
                "refresh_token": "zendesk-refresh",
                "expires_in": 1800,
                "refresh_token_expires_in": 2592000,
            },
        ),
        expected_config={"subdomain": "acme"},
        expires_in=1800,
        refresh=Exchange(
            "https://acme.zendesk.com/oauth/tokens",
            _refresh_fields("zendesk-refresh", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, expires_in="1800"),
            client_auth="body",
            answer={
                "access_token": "zendesk-renewed",
                "token_type": "bearer",
                "scope": "read",
                "refresh_token": "zendesk-refresh-2",
                "expires_in": 1800,
                "refresh_token_expires_in": 2592000,
            },
        ),
        # https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#list-tickets
        proxy=Proxied("GET", "/api/v2/tickets", "https://acme.zendesk.com/api/v2/tickets", _bearer("zendesk-access")),
    ),
    # https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps (the token
    # endpoint answers form-encoded unless asked for JSON; OAuth app tokens do not expire)
    Row(
        name="github",
        auth_mode="OAUTH2",
        docs="https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps",
        scopes="repo,user",
        authorize_url="https://github.com/login/oauth/authorize",
        authorize_params={"client_id": CLIENT_ID},
        token=Exchange(
            "https://github.com/login/oauth/access_token",
            {"code": CODE, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            client_auth="body",
            answer={"access_token": "gho_contract", "scope": "repo,user", "token_type": "bearer"},
        ),
        # https://docs.github.com/en/rest/users/users#get-the-authenticated-user
        proxy=Proxied("GET", "/user", "https://api.github.com/user", _bearer("gho_contract")),
    ),
]

BY_NAME: dict[str, Row] = {row.name: row for row in ROWS}


def answers_for(row: Row) -> list[Answer]:
    """The fake's script for ``row``: consent page, token grants, enrichment, proxy endpoint."""
    answers: list[Answer] = list(row.extra_answers)
    if row.authorize_url:
        to = "setup_url" if row.auth_mode == "APP" else ""
        answers.append(
            Answer(
                "GET", row.authorize_url, redirect={"_to": to, **row.callback_extra} if to else dict(row.callback_extra)
            )
        )
    if row.auth_mode == "APP":  # GitHub's answers are in extra_answers (they depend on the call)
        pass
    elif row.refresh is not None and row.refresh.answer:
        answers.append(Answer("POST", row.refresh.url, row.refresh.answer, when={"grant_type": "refresh_token"}))
    if row.token is not None and row.auth_mode != "APP":
        answers.append(Answer("POST", row.token.url, row.token.answer, form_unless_json=row.name == "github"))
    answers.extend(row.enrichment)
    if row.proxy is not None:
        answers.append(Answer(row.proxy.method, row.proxy.upstream, row.proxy.answer))
    return answers

"""Post-connection enrichment against provider APIs on 127.0.0.1 that answer as each provider
documents: the built-in catalog entries, their origins pointed at the fake, fill the fields Nango's
scripts fill; failures come back as problems, never as exceptions, and never quote a token."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from keyway_shared.credentials.shapes import ApiKeyCredentials, ClientCredentials, Credentials, OAuth2Credentials
from keyway_shared.egress import guarded_session
from keyway_shared.providers import ProviderTemplate, load_catalog
from keyway_shared.providers.enrichment.context import EnrichmentContext, EnrichmentLimits
from keyway_shared.providers.enrichment.hooks import HOOKS
from keyway_shared.providers.enrichment.hooks.google import email_address_hash
from keyway_shared.providers.enrichment.runner import EnrichmentOutcome, enrich

from ..support.provider_apis import ProviderApis, jwt_with, with_origins

TOKEN = "at_enrichment_secret_1"


@pytest.fixture
async def apis() -> AsyncIterator[ProviderApis]:
    server = await ProviderApis(accepts=lambda token: token.startswith("at_") or token.count(".") == 2).start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    session = guarded_session([ipaddress.ip_network("127.0.0.0/8")], timeout=aiohttp.ClientTimeout(total=5))
    yield session
    await session.close()


def builtin(name: str, base: str) -> ProviderTemplate:
    """The built-in entry with every origin in it pointed at the fake."""
    raw = load_catalog().raw(name)
    assert raw is not None
    return ProviderTemplate.model_validate(with_origins(raw, base))


async def run(
    http: aiohttp.ClientSession,
    template: ProviderTemplate,
    provider: str,
    *,
    credentials: Credentials | None = None,
    config: dict[str, Any] | None = None,
    limits: EnrichmentLimits | None = None,
) -> EnrichmentOutcome:
    context = EnrichmentContext(
        provider=provider,
        provider_config_key=provider,
        template=template,
        credentials=credentials or OAuth2Credentials(access_token=TOKEN),
        connection_config=dict(config or {}),
        http=http,
        limits=limits or EnrichmentLimits(call_seconds=2, total_seconds=4),
    )
    return await enrich(context)


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("hubspot", {"portalId": 62515}),
        ("mailchimp", {"dc": "us6"}),
        ("docusign", {"accountId": "18b4799a-xxxx-xxxx-xxxx-b5b4b8a97604", "baseUri": "https://demo.docusign.net"}),
        ("docusign-sandbox", {"accountId": "18b4799a-xxxx-xxxx-xxxx-b5b4b8a97604"}),
        ("linear", {"organizationId": "2e0c2b5a-1b4f-4a4c-9d2e-5b0a7f1c3d9e"}),
        ("attio", {"workspace_id": "14beef7a-99f7-4534-a87e-70b564330a4c"}),
        ("calendly", {"organizationId": "BBBBBBBBBBBBBBBB"}),
        ("gusto", {"companyUuid": "c1a2b3c4-d5e6-47f8-9a0b-1c2d3e4f5a6b"}),
        ("gusto-demo", {"companyUuid": "c1a2b3c4-d5e6-47f8-9a0b-1c2d3e4f5a6b"}),
        ("jira", {"cloudId": "1324a887-45db-1bf4-1e99-ef0ff456d421", "baseUrl": "https://your-domain.atlassian.net"}),
        ("xero", {"tenant_id": "70784a63-d24b-46a9-a4db-0e70a274b056"}),
        ("basecamp", {"accountId": 99999999}),
    ],
)
async def test_builtin_entries_fill_nangos_fields(
    apis: ProviderApis, http: aiohttp.ClientSession, provider: str, expected: dict[str, Any]
) -> None:
    outcome = await run(http, builtin(provider, apis.base), provider, config={"given": "kept"})
    assert outcome.problems == ()
    assert outcome.ran
    assert outcome.connection_config == {"given": "kept", **outcome.connection_config}
    assert {name: outcome.connection_config.get(name) for name in expected} == expected
    assert set(expected) <= set(outcome.filled)
    assert apis.requests, "the fake was asked"
    for asked in apis.requests:
        assert asked["headers"]["Authorization"] == f"Bearer {TOKEN}"  # the credentials, as the proxy sends them


async def test_the_proxy_headers_of_the_template_go_along(apis: ProviderApis, http: aiohttp.ClientSession) -> None:
    template = builtin("hubspot", apis.base)
    assert template.proxy is not None
    template.proxy.headers["x-extra"] = "for-${connectionConfig.given}"
    await run(http, template, "hubspot", config={"given": "acme"})
    assert apis.asked("/account-info/v3/details")[0]["headers"]["x-extra"] == "for-acme"


async def test_jira_takes_the_site_the_user_named_and_the_confluence_account(
    apis: ProviderApis, http: aiohttp.ClientSession
) -> None:
    apis.sites = [
        {"id": "aaaa1111-0000", "name": "First", "url": "https://first.atlassian.net", "scopes": ["read:jira-work"]},
        {
            "id": "bbbb2222-0000",
            "name": "Acme Wiki",
            "url": "https://acme.atlassian.net",
            "scopes": ["read:confluence"],
        },
    ]
    outcome = await run(http, builtin("confluence", apis.base), "confluence", config={"subdomain": "ACME"})
    assert outcome.problems == ()
    assert outcome.connection_config["cloudId"] == "bbbb2222-0000"
    assert outcome.connection_config["baseUrl"] == "https://acme.atlassian.net"
    assert outcome.connection_config["accountId"] == "confluence-account-of-bbbb2222"
    # no subdomain: the first site, Jira's account; a failing account call leaves only the id out
    apis.failures["/ex/jira/aaaa1111-0000/rest/api/3/myself"] = "403"
    outcome = await run(http, builtin("jira", apis.base), "jira")
    assert outcome.problems == ()
    assert outcome.connection_config["cloudId"] == "aaaa1111-0000"
    assert "accountId" not in outcome.connection_config


async def test_xero_with_several_tenants_takes_the_one_of_this_authorization(
    apis: ProviderApis, http: aiohttp.ClientSession
) -> None:
    earlier = {"id": "1", "authEventId": "event-earlier", "tenantId": "tenant-earlier", "tenantType": "ORGANISATION"}
    this = {"id": "2", "authEventId": "event-now", "tenantId": "tenant-now", "tenantType": "ORGANISATION"}
    apis.tenants = [earlier, this]
    token = jwt_with({"authentication_event_id": "event-now", "xero_userid": "u-1"})
    outcome = await run(http, builtin("xero", apis.base), "xero", credentials=OAuth2Credentials(access_token=token))
    assert outcome.connection_config["tenant_id"] == "tenant-now"
    token = jwt_with({"authentication_event_id": "event-unknown"})
    outcome = await run(http, builtin("xero", apis.base), "xero", credentials=OAuth2Credentials(access_token=token))
    assert "tenant_id" not in outcome.connection_config
    assert outcome.problems == ("several Xero tenants, none from this authorization",)


@pytest.mark.parametrize("provider", ["microsoft-teams", "one-drive", "sharepoint-online"])
async def test_microsoft_tenant_comes_from_the_tokens_tid(http: aiohttp.ClientSession, provider: str) -> None:
    template = load_catalog().get(provider)
    assert template is not None
    token = jwt_with({"tid": "9188040d-6c67-4c5b-b112-36a304b66dad", "aud": "00000003-0000-0000-c000-000000000000"})
    outcome = await run(http, template, provider, credentials=OAuth2Credentials(access_token=token))
    assert outcome.connection_config == {"tenantId": "9188040d-6c67-4c5b-b112-36a304b66dad"}
    opaque = await run(http, template, provider)  # a personal account's token is not a JWT
    assert opaque.connection_config == {}
    assert opaque.problems == ("the access token is not a JWT with claims to read",)


async def test_zoho_reads_the_data_centre_from_api_domain(http: aiohttp.ClientSession) -> None:
    template = load_catalog().get("zoho")
    assert template is not None
    raw = {"access_token": TOKEN, "api_domain": "https://www.zohoapis.com.au", "token_type": "Bearer"}
    outcome = await run(http, template, "zoho", credentials=OAuth2Credentials(access_token=TOKEN, raw=raw))
    assert outcome.connection_config["extension"] == "com.au"
    given = await run(
        http, template, "zoho", credentials=OAuth2Credentials(access_token=TOKEN, raw=raw), config={"extension": "eu"}
    )
    assert given.connection_config["extension"] == "eu"  # the user's own choice stays
    evil = {**raw, "api_domain": "https://www.zohoapis.evil.example"}
    refused = await run(http, template, "zoho", credentials=OAuth2Credentials(access_token=TOKEN, raw=evil))
    assert "extension" not in refused.connection_config
    assert refused.problems[0].startswith("extension does not match the pattern")


async def test_highlevel_and_google_hooks(apis: ProviderApis, http: aiohttp.ClientSession) -> None:
    template = load_catalog().get("highlevel")
    assert template is not None
    raw = {"access_token": TOKEN, "companyId": " co-1 ", "locationId": "", "userType": "Company"}
    outcome = await run(http, template, "highlevel", credentials=OAuth2Credentials(access_token=TOKEN, raw=raw))
    assert outcome.connection_config == {"companyId": "co-1"}
    assert email_address_hash(" Alice@Example.com ") == email_address_hash("alice@example.com")
    assert len(email_address_hash("alice@example.com")) == 64


async def test_workable_keeps_a_subdomain_the_user_typed(apis: ProviderApis, http: aiohttp.ClientSession) -> None:
    template = builtin("workable", apis.base)
    outcome = await run(
        http, template, "workable", credentials=ApiKeyCredentials(api_key="at_key"), config={"subdomain": "acme"}
    )
    assert outcome.connection_config == {"subdomain": "acme"}
    assert apis.requests == []  # everything it would set was given: no call


async def test_a_failing_call_is_a_problem_and_the_config_stays(
    apis: ProviderApis, http: aiohttp.ClientSession
) -> None:
    template = builtin("hubspot", apis.base)
    for failure, problem in [
        ("500", "GET http://127.0.0.1:{port}/account-info/v3/details answered HTTP 500"),
        ("huge", "GET http://127.0.0.1:{port}/account-info/v3/details answered more than 1048576 bytes"),
        ("hang", "GET http://127.0.0.1:{port}/account-info/v3/details could not be reached"),
    ]:
        apis.failures["/account-info/v3/details"] = failure
        limits = EnrichmentLimits(call_seconds=0.3, total_seconds=2)
        outcome = await run(http, template, "hubspot", config={"a": 1}, limits=limits)
        assert outcome.connection_config == {"a": 1}
        assert outcome.problems == (problem.format(port=apis.port),)
        assert TOKEN not in repr(outcome)
    del apis.failures["/account-info/v3/details"]
    refused = await run(http, template, "hubspot", credentials=OAuth2Credentials(access_token="wrong"))
    assert refused.problems == (f"GET {apis.base}/account-info/v3/details answered HTTP 401",)


async def test_an_answer_without_the_field_is_a_problem(apis: ProviderApis, http: aiohttp.ClientSession) -> None:
    raw = with_origins(load_catalog().raw("docusign"), apis.base)
    raw["post_connection"][0]["set"]["nope"] = "accounts[is_default=maybe].x"
    template = ProviderTemplate.model_validate(raw)
    outcome = await run(http, template, "docusign")
    assert outcome.connection_config["accountId"] == "18b4799a-xxxx-xxxx-xxxx-b5b4b8a97604"  # the rest is kept
    assert outcome.problems == ("the answer has no nope (at accounts[is_default=maybe].x)",)


async def test_the_whole_enrichment_is_bounded(apis: ProviderApis, http: aiohttp.ClientSession) -> None:
    apis.failures["/oauth/token/accessible-resources"] = "hang"
    outcome = await run(
        http, builtin("jira", apis.base), "jira", limits=EnrichmentLimits(call_seconds=5, total_seconds=0.3)
    )
    assert outcome.connection_config == {}
    assert outcome.problems == ("enrichment took longer than 0.3 s and was cut short",)


async def test_templates_without_a_program_do_nothing(http: aiohttp.ClientSession) -> None:
    template = load_catalog().get("github")
    assert template is not None
    outcome = await run(http, template, "github", config={"x": "y"})
    assert outcome == EnrichmentOutcome(connection_config={"x": "y"})


def nango_entry(script: str, base: str = "https://api.example.com") -> ProviderTemplate:
    """An entry as Nango's catalog writes it: the script's name, no steps."""
    return ProviderTemplate.model_validate(
        {"auth_mode": "OAUTH2", "proxy": {"base_url": base}, "post_connection_script": script}
    )


async def test_hooks_that_read_what_the_connection_holds(http: aiohttp.ClientSession) -> None:
    sellsy = await run(
        http,
        nango_entry("sellsyPostConnection"),
        "sellsy",
        credentials=OAuth2Credentials(access_token=jwt_with({"corpId": 77})),
    )
    assert sellsy.connection_config == {"corpid": 77}
    client = ClientCredentials(token="at_cc", client_id="adobe-client", client_secret="s")
    adobe = await run(http, nango_entry("adobeUmapiPostConnection"), "adobe-umapi", credentials=client)
    assert adobe.connection_config == {"clientId": "adobe-client"}
    assert "s" not in adobe.connection_config.values()
    given = {"username": "u", "password": "p", "other": 1}
    bullhorn = await run(http, nango_entry("bullhornPostConnection"), "bullhorn", config=given)
    assert bullhorn.connection_config == {"other": 1}  # the password is not kept once the connection is made
    assert bullhorn.problems == ()


async def test_a_hook_with_a_bug_loses_nothing(http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(_ctx: EnrichmentContext) -> dict[str, Any]:
        raise KeyError(TOKEN)  # whatever it says, it is not repeated

    monkeypatch.setitem(HOOKS, "brokenPostConnection", broken)
    outcome = await run(http, nango_entry("brokenPostConnection"), "broken", config={"a": 1})
    assert outcome.connection_config == {"a": 1}
    assert outcome.problems == ("the post-connection script brokenPostConnection failed (KeyError)",)
    assert TOKEN not in repr(outcome)


async def test_nango_entry_brought_as_it_is_calls_the_builtin_steps(
    apis: ProviderApis, http: aiohttp.ClientSession
) -> None:
    outcome = await run(http, nango_entry("hubspotPostConnection", apis.base), "hubspot")
    assert outcome.connection_config == {"portalId": 62515}


async def test_a_template_header_replaces_the_credentials_one_whatever_its_case(
    apis: ProviderApis, http: aiohttp.ClientSession
) -> None:
    template = builtin("hubspot", apis.base)
    assert template.proxy is not None
    template.proxy.headers["authorization"] = "Bearer at_from_template_${connectionConfig.given}"
    outcome = await run(http, template, "hubspot", config={"given": "x"})
    assert outcome.problems == ()
    (asked,) = apis.asked("/account-info/v3/details")
    assert asked["authorizations"] == ["Bearer at_from_template_x"]

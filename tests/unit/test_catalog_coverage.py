"""The built-in provider catalog: breadth (issue 4 asks for 150+ real APIs) and the shape of every entry."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest
import yaml

from keyway_shared.providers import ProviderCatalog, ProviderTemplate, interpolation_variables, load_catalog

NAMED_IN_THE_ISSUE = (
    "github",
    "github-app",
    "google",
    "google-calendar",
    "google-drive",
    "google-mail",
    "microsoft",
    "slack",
    "salesforce",
    "hubspot",
    "zendesk",
    "shopify",
    "stripe",
    "notion",
    "jira",
    "confluence",
    "intercom",
    "linear",
    "asana",
    "xero",
    "quickbooks",
    "zoom",
    "dropbox",
    "box",
    "airtable",
    "discord",
    "twitter-v2",
    "linkedin",
    "okta",
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CREDENTIAL_VARIABLES = {"apiKey", "accessToken"}


@pytest.fixture(scope="module")
def templates() -> dict[str, ProviderTemplate]:
    catalog = load_catalog()
    resolved = {name: catalog.get(name) for name in catalog.names()}
    return {name: template for name, template in resolved.items() if template is not None}


@pytest.fixture(scope="module")
def family_files() -> dict[str, dict[str, Any]]:
    """Each ``providers.d/*.yaml`` file as written (aliases not resolved)."""
    directory = resources.files("keyway_shared.providers").joinpath("providers.d")
    files: dict[str, dict[str, Any]] = {}
    for entry in sorted(directory.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            files[entry.name] = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
    return files


def _urls(template: ProviderTemplate) -> dict[str, str]:
    urls: dict[str, str] = {}
    for field in ("authorization_url", "request_url", "refresh_url", "revocation_url", "docs"):
        value = getattr(template, field)
        if value:
            urls[field] = value
    if isinstance(template.token_url, dict):
        urls.update({f"token_url[{mode}]": url for mode, url in template.token_url.items()})
    elif template.token_url:
        urls["token_url"] = template.token_url
    if template.proxy:
        if template.proxy.base_url:
            urls["proxy.base_url"] = template.proxy.base_url
        if template.proxy.verification and template.proxy.verification.base_url_override:
            urls["proxy.verification.base_url_override"] = template.proxy.verification.base_url_override
    return urls


def test_the_catalog_covers_at_least_150_providers(templates: dict[str, ProviderTemplate]) -> None:
    assert len(templates) >= 150, len(templates)
    assert len(load_catalog()) == len(templates)


def test_the_providers_named_in_the_issue_exist(templates: dict[str, ProviderTemplate]) -> None:
    missing = [name for name in NAMED_IN_THE_ISSUE if name not in templates]
    assert not missing, missing


def test_provider_names_are_lowercase_slugs(templates: dict[str, ProviderTemplate]) -> None:
    assert not [name for name in templates if not _NAME.match(name)]


def test_every_interpolation_variable_is_declared(templates: dict[str, ProviderTemplate]) -> None:
    problems = {}
    for name, template in templates.items():
        missing = template.connection_config_variables() - set(template.connection_config)
        if missing:
            problems[name] = sorted(missing)
    assert not problems, problems


def test_oauth2_entries_have_both_urls(templates: dict[str, ProviderTemplate]) -> None:
    incomplete = [
        name
        for name, template in templates.items()
        if template.auth_mode == "OAUTH2" and not (template.authorization_url and template.token_url_for("OAUTH2"))
    ]
    assert not incomplete, incomplete


def test_client_credentials_and_oauth1_entries_have_their_urls(templates: dict[str, ProviderTemplate]) -> None:
    for name, template in templates.items():
        if template.auth_mode == "OAUTH2_CC":
            assert template.token_url_for(), name
        if template.auth_mode == "OAUTH1":
            assert template.request_url, name
            assert template.authorization_url, name
            assert template.token_url_for(), name


def test_every_url_is_https(templates: dict[str, ProviderTemplate]) -> None:
    insecure = {}
    for name, template in templates.items():
        for field, url in _urls(template).items():
            if url.startswith("${connectionConfig."):
                continue  # the whole origin comes from the connection (e.g. Salesforce instance_url)
            if not url.startswith("https://"):
                insecure[f"{name}.{field}"] = url
    assert not insecure, insecure


def test_oauth_urls_carry_no_query_string(templates: dict[str, ProviderTemplate]) -> None:
    """Only origin and path of authorization/token URLs are used (spec §5.3): parameters belong in *_params."""
    with_query = {}
    for name, template in templates.items():
        for field, url in _urls(template).items():
            if field != "docs" and "?" in url:
                with_query[f"{name}.{field}"] = url
    assert not with_query, with_query


def test_api_key_entries_inject_the_key(templates: dict[str, ProviderTemplate]) -> None:
    missing = []
    for name, template in templates.items():
        if template.auth_mode != "API_KEY":
            continue
        values = [*template.proxy.headers.values(), *template.proxy.query.values()] if template.proxy else []
        if not any("${apiKey}" in value for value in values):
            missing.append(name)
    assert not missing, missing


def test_header_and_query_variables_are_credentials_or_connection_config(
    templates: dict[str, ProviderTemplate],
) -> None:
    unknown = {}
    for name, template in templates.items():
        if not template.proxy:
            continue
        for value in [*template.proxy.headers.values(), *template.proxy.query.values()]:
            extra = interpolation_variables(value) - _CREDENTIAL_VARIABLES - set(template.connection_config)
            if template.auth_mode == "TWO_STEP":  # the person's own fields, stored with the token
                extra = {name for name in extra if not name.startswith("credentials.")}
            if extra:
                unknown[name] = sorted(extra)
    assert not unknown, unknown


def test_proxied_entries_have_a_base_url(templates: dict[str, ProviderTemplate]) -> None:
    without = [
        name
        for name, template in templates.items()
        if template.auth_mode != "NONE" and not (template.proxy and template.proxy.base_url)
    ]
    assert not without, without


def test_verification_endpoints_are_paths(templates: dict[str, ProviderTemplate]) -> None:
    for name, template in templates.items():
        verification = template.proxy.verification if template.proxy else None
        if verification:
            assert all(endpoint.startswith("/") for endpoint in verification.endpoints), name
            assert verification.method in {"GET", "POST"}, name
            assert template.auth_mode in {"API_KEY", "BASIC"}, name


def test_retry_headers_name_one_header(templates: dict[str, ProviderTemplate]) -> None:
    for name, template in templates.items():
        retry = template.proxy.retry if template.proxy else None
        if retry:
            assert (retry.at is None) != (retry.after is None), name
            for header in retry.at or retry.after or []:  # header names, the first present wins
                assert header == header.lower(), name
                assert " " not in header, name


def test_family_files_are_complete_entries(family_files: dict[str, dict[str, Any]]) -> None:
    assert len(family_files) >= 10
    catalog = load_catalog()
    seen: set[str] = set()
    for filename, entries in family_files.items():
        assert entries, filename
        for name, entry in entries.items():
            assert name not in seen, f"{name} is defined twice in providers.d"
            seen.add(name)
            where = f"{filename}: {name}"
            assert isinstance(entry, dict), where
            assert entry.get("display_name"), where
            if "alias" in entry:
                assert entry["alias"] in catalog, where
            else:
                assert entry.get("auth_mode"), where
                assert entry.get("docs", "").startswith("https://"), where
                assert entry.get("categories"), where
            template = catalog.get(name)
            assert template is not None, where
            assert template.docs, where
            assert template.categories, where


def _get(catalog: ProviderCatalog, name: str) -> ProviderTemplate:
    template = catalog.get(name)
    assert template is not None, name
    return template


def _base_url(template: ProviderTemplate) -> str | None:
    return template.proxy.base_url if template.proxy else None


def test_aliases_inherit_and_override() -> None:
    catalog = load_catalog()
    google, gmail = _get(catalog, "google"), _get(catalog, "google-mail")
    assert gmail.authorization_url == google.authorization_url
    assert gmail.authorization_params == {"response_type": "code", "access_type": "offline", "prompt": "consent"}
    assert gmail.revocation_url == "https://oauth2.googleapis.com/revoke"
    assert _base_url(gmail) == "https://gmail.googleapis.com"
    teams = _get(catalog, "microsoft-teams")
    assert teams.disable_pkce
    assert teams.default_scopes == ["offline_access"]
    zoho_desk = _get(catalog, "zoho-desk")
    assert zoho_desk.connection_config_variables() == {"extension"}
    assert set(zoho_desk.connection_config) == {"extension", "api_domain"}  # inherited from zoho


def test_provider_specific_facts() -> None:
    catalog = load_catalog()
    salesforce = _get(catalog, "salesforce")
    assert salesforce.token_response_metadata == ["instance_url"]
    assert _base_url(salesforce) == "${connectionConfig.instance_url}"
    sandbox = _get(catalog, "salesforce-sandbox")
    token_url = sandbox.token_url_for() or ""
    assert sandbox.render_url(token_url, {}) == "https://test.salesforce.com/services/oauth2/token"
    my_domain = {"hostname": "acme--uat.sandbox.my.salesforce.com"}  # a sandbox's My Domain login host
    assert (
        sandbox.render_url(token_url, my_domain) == "https://acme--uat.sandbox.my.salesforce.com/services/oauth2/token"
    )
    assert "team.id" in _get(catalog, "slack").token_response_metadata
    assert _get(catalog, "quickbooks").redirect_uri_metadata == ["realmId"]
    notion = _get(catalog, "notion")
    assert notion.body_format == "json"
    assert notion.authorization_method == "header"
    assert _get(catalog, "twitter-v2").token_request_auth_method == "basic"
    klaviyo = _get(catalog, "klaviyo")
    assert klaviyo.auth_mode == "API_KEY"
    assert klaviyo.proxy is not None
    assert klaviyo.proxy.headers["authorization"] == "Klaviyo-API-Key ${apiKey}"
    woocommerce = _get(catalog, "woocommerce")
    assert woocommerce.auth_mode == "BASIC"
    assert woocommerce.connection_config_variables() == {"storeURL"}
    assert _get(catalog, "paypal").auth_mode == "OAUTH2_CC"
    netsuite_tba = _get(catalog, "netsuite-tba")
    assert netsuite_tba.auth_mode == "TBA"
    assert netsuite_tba.connection_config_variables() == {"accountId"}

"""The provider catalog: the built-in templates, aliases, an operator's file merged over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyway_shared.providers import CatalogError, ProviderTemplate, interpolation_variables, load_catalog


@pytest.fixture(scope="module")
def builtin() -> list[tuple[str, ProviderTemplate]]:
    catalog = load_catalog()
    templates = [(name, catalog.get(name)) for name in catalog.names()]
    return [(name, template) for name, template in templates if template is not None]


def test_the_first_providers_are_there() -> None:
    catalog = load_catalog()
    expected = {"github": "OAUTH2", "zendesk": "OAUTH2", "posthog": "API_KEY", "freshdesk": "BASIC"}
    expected["unauthenticated"] = "NONE"
    for name, mode in expected.items():
        template = catalog.get(name)
        assert template is not None, name
        assert template.auth_mode == mode, name
        assert name in catalog
    assert len(catalog) == len(catalog.names()) >= 5
    assert catalog.get("no-such-provider") is None
    assert "no-such-provider" not in catalog


def test_github_oauth2_urls() -> None:
    github = load_catalog().get("github")
    assert github is not None
    assert github.authorization_url == "https://github.com/login/oauth/authorize"
    assert github.token_url_for() == "https://github.com/login/oauth/access_token"
    assert github.proxy is not None
    assert github.proxy.base_url == "https://api.github.com"


def test_zendesk_needs_a_subdomain() -> None:
    zendesk = load_catalog().get("zendesk")
    assert zendesk is not None
    assert "subdomain" in zendesk.connection_config
    assert zendesk.connection_config_variables() == {"subdomain"}
    assert zendesk.authorization_url is not None
    assert "${connectionConfig.subdomain}" in zendesk.authorization_url


def test_github_app_alias_resolves() -> None:
    catalog = load_catalog()
    app = catalog.get("github-app")
    github = catalog.get("github")
    assert app is not None
    assert github is not None
    assert app.alias == "github"
    assert app.auth_mode == "APP"  # its own keys win
    assert app.proxy == github.proxy  # the rest comes from the aliased entry
    assert app.docs == github.docs
    raw = catalog.raw("github-app")
    assert raw is not None
    assert raw["proxy"]["base_url"] == "https://api.github.com"
    assert app.connection_config_variables() == {"appPublicLink", "installation_id"}


def test_every_interpolation_variable_is_declared(builtin: list[tuple[str, ProviderTemplate]]) -> None:
    assert builtin
    for name, template in builtin:
        missing = template.connection_config_variables() - set(template.connection_config)
        assert not missing, f"{name} uses undeclared connection config {sorted(missing)}"


def test_interpolation_variables() -> None:
    text = "https://${connectionConfig.subdomain}.x.com/${connectionConfig.region}?k=${apiKey}"
    assert interpolation_variables(text) == {"subdomain", "region", "apiKey"}
    assert interpolation_variables("https://plain.example") == set()


def test_extra_file_is_merged_over_the_builtin(tmp_path: Path) -> None:
    extra = tmp_path / "providers.yaml"
    extra.write_text(
        """
local-api:
  display_name: Local test API
  auth_mode: API_KEY
  proxy:
    base_url: http://127.0.0.1:${connectionConfig.port}
    headers:
      x-api-key: ${apiKey}
  connection_config:
    port: {type: string}
posthog:
  auth_mode: API_KEY
  display_name: PostHog (self-hosted)
  proxy:
    base_url: https://posthog.internal
local-github:
  alias: github
  display_name: GitHub through the alias
""",
        encoding="utf-8",
    )
    catalog = load_catalog(str(extra))
    local = catalog.get("local-api")
    assert local is not None
    assert local.auth_mode == "API_KEY"
    assert local.connection_config_variables() == {"port"}
    posthog = catalog.get("posthog")
    assert posthog is not None
    assert posthog.display_name == "PostHog (self-hosted)"  # the operator's entry replaces the built-in one
    assert posthog.proxy is not None
    assert posthog.proxy.base_url == "https://posthog.internal"
    aliased = catalog.get("local-github")
    assert aliased is not None
    assert aliased.auth_mode == "OAUTH2"
    assert aliased.display_name == "GitHub through the alias"
    assert catalog.get("github") is not None  # built-in entries the file does not name stay
    assert catalog.get("zendesk") is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("github: [unclosed\n  - : :", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("broken: 42\n", "not a mapping"),
        ("weird:\n  auth_mode: TELEPATHY\n", "weird"),
        ("nothing:\n  display_name: no auth mode\n", "nothing"),
        ("loop-a:\n  alias: loop-b\nloop-b:\n  alias: loop-a\n", "alias cycle"),
        ("orphan:\n  alias: nowhere\n  auth_mode: NONE\n", "unknown provider"),
    ],
    ids=["bad-yaml", "list", "entry-not-mapping", "bad-auth-mode", "missing-auth-mode", "alias-cycle", "bad-alias"],
)
def test_bad_files_are_rejected(tmp_path: Path, content: str, message: str) -> None:
    extra = tmp_path / "providers.yaml"
    extra.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        load_catalog(str(extra))


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"providers\.yaml"):
        load_catalog(str(tmp_path / "providers.yaml"))


def test_known_typo_is_read_as_meant() -> None:
    template = ProviderTemplate.model_validate({"auth_mode": "OAUTH2", "scope_seprator": ","})
    assert template.scope_separator == ","

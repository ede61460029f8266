"""The template schema reads Nango's current catalog shapes as Nango means them (issue 18): header
lists for retry hints, endpoint lists for verifications, scalars in parameters as the text sent,
``A || B`` fallbacks, Nango's other fields; and the catalog loader refuses a bad operator entry or a
duplicate key in one clear line, skipping entries of modes Keyway has no flow for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from pydantic import ValidationError
from structlog.testing import capture_logs

from auth_gateway.proxy.retry import header_delay
from keyway_shared.providers import CatalogError, ProviderTemplate, load_catalog
from keyway_shared.providers.catalog import check_files
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError, interpolate
from keyway_shared.providers.rendering import render_header, render_url

NOW = 1_700_000_000.0


def _template(**fields: Any) -> ProviderTemplate:
    return ProviderTemplate.model_validate({"auth_mode": "API_KEY", **fields})


# --- the model ---------------------------------------------------------------------------------


def test_retry_hints_are_header_lists_and_a_single_name_is_a_list_of_one() -> None:
    nango = _template(proxy={"base_url": "https://x.example", "retry": {"at": ["a-reset", "b-reset"]}})
    assert nango.proxy is not None
    assert nango.proxy.retry is not None
    assert nango.proxy.retry.at == ["a-reset", "b-reset"]
    assert nango.proxy.retry.after is None
    keyway = _template(proxy={"base_url": "https://x.example", "retry": {"after": "retry-after"}})
    assert keyway.proxy is not None
    assert keyway.proxy.retry is not None
    assert keyway.proxy.retry.after == ["retry-after"]
    with pytest.raises(ValidationError) as refused:
        _template(proxy={"base_url": "https://x.example", "retry": {"at": {"header": "x"}}})
    assert refused.value.errors()[0]["loc"] == ("proxy", "retry", "at")


def test_of_the_retry_headers_present_the_longest_wait_is_kept() -> None:
    """Nango's proxy (packages/shared/lib/services/proxy/retry.ts) reads every listed header the
    answer carries and waits for the latest reset: Affinity's user and organization limits."""
    proxy = _template(proxy={"retry": {"at": ["x-user-reset", "x-org-reset"]}}).proxy
    assert proxy is not None
    hint = proxy.retry
    assert header_delay(CIMultiDict({"X-Org-Reset": str(int(NOW) + 30)}), hint, now=NOW) == 30
    both = CIMultiDict({"X-Org-Reset": str(int(NOW) + 30), "X-User-Reset": str(int(NOW) + 5)})
    assert header_delay(both, hint, now=NOW) == 30
    unreadable = CIMultiDict({"X-User-Reset": "soon", "X-Org-Reset": str(int(NOW) + 8)})
    assert header_delay(unreadable, hint, now=NOW) == 8
    assert header_delay(CIMultiDict({"Retry-After": "9"}), hint, now=NOW) == 9  # none present: Retry-After
    after = _template(proxy={"retry": {"after": ["x-wait", "retry-after"]}}).proxy
    assert after is not None
    assert header_delay(CIMultiDict({"Retry-After": "4", "X-Wait": "2"}), after.retry, now=NOW) == 4


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        (str(int(NOW) + 12), 12),  # Unix seconds
        (str(int(NOW * 1000) + 12_000), 12),  # Unix milliseconds, as Nango tells them apart
        ("2023-11-14T22:13:32Z", 12),  # a date
        ("Tue, 14 Nov 2023 22:13:32 GMT", 12),  # an HTTP date
        ("15", 15),  # small: seconds from now
    ],
)
def test_an_at_header_is_a_time_in_any_of_its_forms(value: str, wait: float) -> None:
    proxy = _template(proxy={"retry": {"at": ["x-reset"]}}).proxy
    assert proxy is not None
    assert header_delay(CIMultiDict({"X-Reset": value}), proxy.retry, now=NOW) == pytest.approx(wait)


def test_a_verification_lists_endpoints_and_the_old_single_endpoint_is_one_of_them() -> None:
    nango = _template(proxy={"base_url": "https://x.example", "verification": {"endpoints": ["/v1/a", "/v3/b"]}})
    assert nango.proxy is not None
    assert nango.proxy.verification is not None
    assert nango.proxy.verification.endpoints == ["/v1/a", "/v3/b"]
    assert nango.proxy.verification.method == "GET"
    keyway = _template(proxy={"base_url": "https://x.example", "verification": {"endpoint": "/me"}})
    assert keyway.proxy is not None
    assert keyway.proxy.verification is not None
    assert keyway.proxy.verification.endpoints == ["/me"]
    assert keyway.proxy.verification.endpoint == "/me"
    with pytest.raises(ValidationError, match="'endpoints'"):
        _template(proxy={"base_url": "https://x.example", "verification": {"method": "GET"}})


@pytest.mark.parametrize(
    ("written", "sent"),
    [(1, "1"), (True, "true"), (False, "false"), (2.5, "2.5"), (3.0, "3"), ("as is", "as is")],
)
def test_a_parameter_scalar_is_the_text_sent_on_the_wire(written: object, sent: str) -> None:
    template = ProviderTemplate.model_validate(
        {
            "auth_mode": "OAUTH2",
            "authorization_params": {"force_verify": written},
            "token_params": {"expiring": written},
            "refresh_params": {"x": written},
            "token_headers": {"x": written},
            "proxy": {"headers": {"x": written}, "query": {"x": written}},
        }
    )
    assert template.authorization_params == {"force_verify": sent}
    assert template.token_params == {"expiring": sent}
    assert template.refresh_params == {"x": sent}
    assert template.token_headers == {"x": sent}
    assert template.proxy is not None
    assert template.proxy.headers == {"x": sent}
    assert template.proxy.query == {"x": sent}


def test_a_parameter_that_cannot_go_on_the_wire_is_refused_with_its_path() -> None:
    with pytest.raises(ValidationError) as refused:
        ProviderTemplate.model_validate({"auth_mode": "OAUTH2", "token_params": {"request": {"nested": "x"}}})
    assert refused.value.errors()[0]["loc"] == ("token_params", "request")


def test_nango_fields_are_declared_and_unknown_ones_kept() -> None:
    template = ProviderTemplate.model_validate(
        {
            "auth_mode": "OAUTH2_CC",
            "body_format": "query",
            "token_request_auth_method": "private_key_jwt",
            "docs_connect": "https://docs.example/connect",
            "webhook_user_defined_secret": True,
            "webhook_routing_script": "routeWebhook",
            "credentials": {"apiKey": {"type": "string", "title": "Key", "description": "d"}},
            "proxy": {
                "base_url": "https://x.example",
                "forward_headers_on_redirect": True,
                "retry": {"remaining": "x-left", "error_code": [403, "5xx"], "in_body": {"path": "error"}},
            },
            "a_field_of_next_year": {"kept": True},
        }
    )
    assert template.body_format == "query"
    assert template.token_request_auth_method == "private_key_jwt"
    assert template.webhook_user_defined_secret is True
    assert template.proxy is not None
    assert template.proxy.retry is not None
    assert template.proxy.forward_headers_on_redirect is True
    assert template.proxy.retry.error_code == ["403", "5xx"]
    assert template.model_extra == {"a_field_of_next_year": {"kept": True}}
    with pytest.raises(ValidationError) as refused:
        ProviderTemplate.model_validate({"auth_mode": "OAUTH2", "webhook_user_defined_secret": "perhaps"})
    assert refused.value.errors()[0]["loc"] == ("webhook_user_defined_secret",)


# --- A || B fallbacks ----------------------------------------------------------------------------

SALESFORCE = (
    "https://${connectionConfig.hostname}/services/oauth2/token || https://login.salesforce.com/services/oauth2/token"
)
SERVICENOW = "https://${connectionConfig.hostname}/api || https://${connectionConfig.subdomain}.service-now.com/api"


def test_a_fallback_url_renders_the_first_alternative_with_all_its_values() -> None:
    assert render_url(SALESFORCE, {"hostname": "acme.my.salesforce.com"}) == (
        "https://acme.my.salesforce.com/services/oauth2/token"
    )
    assert render_url(SALESFORCE, {}) == "https://login.salesforce.com/services/oauth2/token"
    assert render_url(SALESFORCE, {"hostname": ""}) == "https://login.salesforce.com/services/oauth2/token"
    assert render_url(SERVICENOW, {"subdomain": "acme"}) == "https://acme.service-now.com/api"
    assert render_url(SERVICENOW, {"subdomain": "acme", "hostname": "sn.acme.example"}) == "https://sn.acme.example/api"


def test_a_value_that_does_not_fit_is_refused_not_replaced_by_the_fallback() -> None:
    with pytest.raises(UnsafeParamError) as refused:
        render_url(SALESFORCE, {"hostname": "evil.example/x?"})
    assert refused.value.name == "hostname"
    with pytest.raises(UnsafeParamError, match="pattern"):
        render_url(SALESFORCE, {"hostname": "acme.example"}, patterns={"hostname": r"\.salesforce\.com$"})
    with pytest.raises(UnsafeParamError):  # the fallback chosen is checked as any URL is
        render_url(SERVICENOW, {"subdomain": "acme.evil.example/"})


def test_when_no_alternative_has_its_values_the_last_ones_are_missing() -> None:
    with pytest.raises(MissingParamError) as missing:
        render_url(SERVICENOW, {})
    assert missing.value.names == ["subdomain"]


def test_a_whole_origin_alternative_follows_the_origin_rule() -> None:
    gong = "${connectionConfig.api_base_url_for_customer} || https://api.gong.io"
    assert render_url(gong, {}) == "https://api.gong.io"
    stored = {"api_base_url_for_customer": "https://us-1.api.gong.io"}
    assert render_url(gong, stored, origin_fields=["api_base_url_for_customer"]) == "https://us-1.api.gong.io"
    with pytest.raises(UnsafeParamError, match="whole origin"):  # a browser's value for it: refused
        render_url(gong, stored)


def test_fallback_headers_and_query_values() -> None:
    version = "${connectionConfig.version} || 2022-11-28"
    assert render_header(version, {}) == "2022-11-28"
    assert render_header(version, {"version": "2024-01-01"}) == "2024-01-01"
    assert render_header("${connectionConfig.appDetails} || App (support@nango.dev)", {}) == "App (support@nango.dev)"
    with pytest.raises(UnsafeParamError):
        render_header(version, {"version": "1\r\nX-Injected: 1"})
    assert interpolate("${connectionConfig.key} || fallback", {}) == "fallback"
    assert interpolate("${connectionConfig.key} || fallback", {"key": 7}) == "7"


def test_a_template_checks_connect_values_against_each_alternative() -> None:
    template = ProviderTemplate.model_validate(
        {"auth_mode": "OAUTH2", "authorization_url": SERVICENOW, "token_url": SERVICENOW}
    )
    template.check_connection_config({"subdomain": "acme"})
    with pytest.raises(UnsafeParamError):
        template.check_connection_config({"hostname": "a.example:1@b"})


# --- the catalog loader ---------------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "providers.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_bad_operator_entry_is_refused_naming_file_provider_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "good:\n  auth_mode: API_KEY\n  proxy:\n    base_url: https://good.example\n"
        "acme:\n  auth_mode: API_KEY\n  proxy:\n    base_url: https://acme.example\n    retry:\n      at: {x: 1}\n",
    )
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: provider 'acme' field proxy.retry.at: ")
    assert "\n" not in message


def test_every_bad_entry_is_counted_in_the_refusal(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "one:\n  auth_mode: OAUTH9\ntwo:\n  auth_mode: API_KEY\n  disable_pkce: sometimes\n"
        "three:\n  alias: no-such-provider\n",
    )
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    assert str(refused.value) == (
        f"{path}: provider 'three' field alias: aliases unknown provider 'no-such-provider' (and 2 more bad entries)"
    )
    problems = {str(problem) for problem in check_files([path]).problems}
    assert f"{path}: provider 'one' field auth_mode: " in {p.split("Input")[0] for p in problems}
    assert any(p.startswith(f"{path}: provider 'two' field disable_pkce: ") for p in problems)


def test_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "acme:\n  auth_mode: API_KEY\nother:\n  auth_mode: NONE\nacme:\n  auth_mode: BASIC\n",
    )
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    assert str(refused.value) == f"{path}: duplicate key 'acme' at line 5 (first at line 1)"
    nested = _write(tmp_path, "acme:\n  auth_mode: API_KEY\n  docs: a\n  docs: b\n", "nested.yaml")
    with pytest.raises(CatalogError, match="duplicate key 'docs' at line 4 \\(first at line 3\\)"):
        load_catalog(nested)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "base: &base\n  auth_mode: API_KEY\n  docs: a\nacme:\n  <<: *base\n  docs: b\n",
    )
    catalog = load_catalog(path)
    template = catalog.get("acme")
    assert template is not None
    assert template.docs == "b"


def test_an_entry_of_a_mode_keyway_cannot_connect_yet_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "acme-tab:\n  auth_mode: TABLEAU\nacme-tab-eu:\n  alias: acme-tab\nacme:\n  auth_mode: API_KEY\n",
    )
    with capture_logs() as logs:
        catalog = load_catalog(path)
    assert "acme" in catalog
    assert not {"acme-tab", "acme-tab-eu"} & set(catalog.names())
    warning = next(entry for entry in logs if entry["event"].startswith("providers skipped"))
    assert warning["log_level"] == "warning"
    assert warning["providers"] == ["acme-tab", "acme-tab-eu"]
    assert warning["modes"] == {"TABLEAU": 2}


def test_an_alias_resolves_over_the_built_in_catalog_and_later_files(tmp_path: Path) -> None:
    first = _write(tmp_path, "acme:\n  auth_mode: API_KEY\n  docs: first\n", "first.yaml")
    second = _write(
        tmp_path, "acme:\n  auth_mode: BASIC\n  docs: second\nacme-eu:\n  alias: acme\n  docs: eu\n", "second.yaml"
    )
    catalog = load_catalog(f"{first},{second}")
    acme, eu = catalog.get("acme"), catalog.get("acme-eu")
    assert acme is not None
    assert acme.auth_mode == "BASIC"
    assert eu is not None
    assert (eu.auth_mode, eu.docs) == ("BASIC", "eu")
    raw = catalog.raw("acme-eu")
    assert raw is not None
    assert raw["docs"] == "eu"


def test_a_scheme_and_one_placeholder_takes_a_host_and_a_path() -> None:
    freshsales = "https://${connectionConfig.bundleAlias} || https://${connectionConfig.subdomain}.freshsales.io"
    given = {"bundleAlias": "acme.myfreshworks.com/crm/sales"}
    assert render_url(freshsales, given) == "https://acme.myfreshworks.com/crm/sales"
    assert render_url(freshsales, {"bundleAlias": "acme.example/"}) == "https://acme.example/"
    assert render_url(freshsales, {"subdomain": "acme"}) == "https://acme.freshsales.io"
    for bad in ("acme.example/../admin", "evil.example@x/y", "a.example/b?c", "a.example/b#c", "a.example:81/b"):
        with pytest.raises(UnsafeParamError):
            render_url(freshsales, {"bundleAlias": bad})
    with pytest.raises(UnsafeParamError, match="pattern"):
        render_url(freshsales, given, patterns={"bundleAlias": r"\.freshworks\.com/"})

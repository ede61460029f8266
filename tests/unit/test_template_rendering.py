"""Rendering template URLs and headers (issue 14 #1): no configuration value can move a request elsewhere,
and every shipped template still renders with plausible values."""

from __future__ import annotations

from typing import Any

import pytest

from auth_gateway.connect.protocol.oauth2 import config_to_store
from keyway_shared.providers import ProviderTemplate, load_catalog
from keyway_shared.providers.interpolation import MissingParamError, UnsafeParamError
from keyway_shared.providers.rendering import render_header, render_url

ZENDESK = "https://${connectionConfig.subdomain}.zendesk.com/oauth/tokens"
TENANT = "https://login.microsoftonline.com/${connectionConfig.tenant}/oauth2/v2.0/token"


@pytest.mark.parametrize(
    "value",
    [
        "attacker.example/x?",  # the payload
        "attacker.example/x%3F",
        "attacker.example#",
        "attacker.example\\",
        "user@attacker.example",
        "attacker.example:8443",
        "attacker.example/",
        "..",
        "a..b",
        ".acme",
        "acme.",
        "a b",
        "acme\r\nX-Injected: 1",
        "acme\n",
        "a_b",
        "[::1]",
        "%61cme",
        "\uff41cme",  # a fullwidth "a", which an IDNA encoder would turn into "a"
    ],
)
def test_a_host_value_that_would_leave_its_label_is_refused(value: str) -> None:
    with pytest.raises(UnsafeParamError) as refused:
        render_url(ZENDESK, {"subdomain": value})
    assert refused.value.name == "subdomain"
    assert value not in str(refused.value)  # the browser's text is never echoed


@pytest.mark.parametrize("value", ["acme", "acme-eu", "a.b", "ACME", "d3v"])
def test_a_host_value_stays_under_the_template_suffix(value: str) -> None:
    assert render_url(ZENDESK, {"subdomain": value}) == f"https://{value}.zendesk.com/oauth/tokens"


@pytest.mark.parametrize(("value", "why"), [("-acme", "label"), ("x" * 64, "label"), ("a." * 130 + "b", "length")])
def test_the_rendered_host_must_be_a_host_name(value: str, why: str) -> None:
    """Caught by the check on the result, which holds even when a value passes its charset."""
    with pytest.raises(UnsafeParamError, match="invalid host name"):
        render_url(ZENDESK, {"subdomain": value})


@pytest.mark.parametrize("value", ["..", ".", "../x", "a/b", "a%2Fb", "a%2fb", "a?b", "a#b", "a b", "a\\b", "a@b:c"])
def test_a_path_value_is_one_segment(value: str) -> None:
    with pytest.raises(UnsafeParamError, match="single path segment"):
        render_url(TENANT, {"tenant": value})


@pytest.mark.parametrize("value", ["common", "contoso.onmicrosoft.com", "9188040d-6c67-4c5b-b112-36a304b66dad"])
def test_a_path_value_that_is_a_segment_renders(value: str) -> None:
    assert render_url(TENANT, {"tenant": value}) == f"https://login.microsoftonline.com/{value}/oauth2/v2.0/token"


def test_port_and_query_positions() -> None:
    port = "http://127.0.0.1:${connectionConfig.port}/x"
    assert render_url(port, {"port": 8080}) == "http://127.0.0.1:8080/x"
    for value in ("0", "65536", "80/a", "80@x", "http"):
        with pytest.raises(UnsafeParamError, match="port number"):
            render_url(port, {"port": value})
    query = "https://api.example.com/v1?account=${connectionConfig.account}"
    assert render_url(query, {"account": "a&b=c#d/e"}) == "https://api.example.com/v1?account=a%26b%3Dc%23d%2Fe"


@pytest.mark.parametrize(
    "template",
    [
        "${connectionConfig.scheme}://api.example.com",
        "https://${connectionConfig.user}@api.example.com",
        "https://a.example.com/#${connectionConfig.f}",
    ],
)
def test_scheme_userinfo_and_fragment_take_no_value(template: str) -> None:
    name = template.split("connectionConfig.")[1].split("}")[0]
    with pytest.raises(UnsafeParamError):
        render_url(template, {name: "https"})


def test_a_declared_pattern_is_enforced() -> None:
    zendesk = load_catalog().get("zendesk")
    assert zendesk is not None
    assert zendesk.render_url(zendesk.token_url_for() or "", {"subdomain": "acme"}).startswith("https://acme.")
    for value in ("ACME", "a.b", "attacker.example/x?"):
        with pytest.raises(UnsafeParamError, match="pattern"):
            zendesk.render_url(zendesk.token_url_for() or "", {"subdomain": value})
    # Python's ``$`` also matches before a final newline: the host charset still refuses it.
    with pytest.raises(UnsafeParamError, match="host name"):
        zendesk.render_url(zendesk.token_url_for() or "", {"subdomain": "acme\n"})


def test_a_domain_ending_value_is_held_to_the_providers_own_domains() -> None:
    """``accounts.zoho.${extension}``: the value names the registrable domain, so only Zoho's pass."""
    zoho = load_catalog().get("zoho")
    assert zoho is not None
    url = zoho.token_url_for() or ""
    assert zoho.render_url(url, {"extension": "com.au"}) == "https://accounts.zoho.com.au/oauth/v2/token"
    for value in ("evil.com", "com.evil.example", "eu.evil"):
        with pytest.raises(UnsafeParamError, match="pattern"):
            zoho.render_url(url, {"extension": value})


def test_a_whole_origin_comes_only_from_the_token_response_of_a_stored_connection() -> None:
    salesforce = load_catalog().get("salesforce")
    assert salesforce is not None
    assert salesforce.proxy is not None
    assert salesforce.proxy.base_url
    base = salesforce.proxy.base_url
    good = {"instance_url": "https://acme.my.salesforce.com"}
    assert salesforce.render_url(base, good, stored=True) == "https://acme.my.salesforce.com"
    with pytest.raises(UnsafeParamError, match="token response"):
        salesforce.render_url(base, good)  # at connect time the value could only be the browser's
    for origin in (
        "http://acme.my.salesforce.com",
        "https://user@attacker.example",
        "https://attacker.example:8443",
        "https://attacker.example/path",
        "https://attacker.example?x",
        "https://attacker.example#x",
        "javascript:alert(1)",
        "https://-bad.example",
    ):
        with pytest.raises(UnsafeParamError, match="https origin"):
            salesforce.render_url(base, {"instance_url": origin}, stored=True)
    pipedrive = load_catalog().get("pipedrive")
    assert pipedrive is not None
    assert pipedrive.proxy is not None
    assert pipedrive.proxy.base_url
    rendered = pipedrive.render_url(
        pipedrive.proxy.base_url, {"api_domain": "https://acme.pipedrive.com/"}, stored=True
    )
    assert rendered == "https://acme.pipedrive.com/api"


def test_a_whole_origin_that_is_not_the_providers_is_refused() -> None:
    with pytest.raises(UnsafeParamError, match="whole origin"):
        render_url("${connectionConfig.base}/api", {"base": "https://attacker.example"}, origin_fields=("other",))


def test_missing_values_are_named() -> None:
    with pytest.raises(MissingParamError) as missing:
        render_url("https://${connectionConfig.host}/realms/${connectionConfig.realm}", {"host": "sso.example.com"})
    assert missing.value.names == ["realm"]


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\x00b", "a\tb", "a\x7fb"])
def test_a_header_value_with_a_control_character_is_refused(value: str) -> None:
    with pytest.raises(UnsafeParamError, match="control character"):
        render_header("Bearer ${apiKey}", {"apiKey": value})


def test_a_header_value_renders() -> None:
    assert render_header("${connectionConfig.a}; v=${apiKey}", {"a": "MyApp; 1.0", "apiKey": "k"}) == "MyApp; 1.0; v=k"


def test_connect_time_check_covers_every_url_and_header() -> None:
    personio = load_catalog().get("personio")
    assert personio is not None
    personio.check_connection_config({"partnerId": "acme", "appId": "app"})
    with pytest.raises(UnsafeParamError) as refused:
        personio.check_connection_config({"partnerId": "acme\r\nX-Injected: 1"})
    assert refused.value.name == "partnerId"
    zendesk = load_catalog().get("zendesk")
    assert zendesk is not None
    with pytest.raises(UnsafeParamError):
        zendesk.check_connection_config({"subdomain": "attacker.example/x?"})
    salesforce = load_catalog().get("salesforce")
    assert salesforce is not None
    salesforce.check_connection_config({"instance_url": "https://attacker.example"})  # dropped, not used


def test_what_an_authorization_stores() -> None:
    template = ProviderTemplate.model_validate(
        {
            "auth_mode": "OAUTH2",
            "token_url": "https://${connectionConfig.subdomain}.example.com/token",
            "proxy": {"base_url": "${connectionConfig.instance_url}"},
            "redirect_uri_metadata": ["subdomain", "realmId"],
            "token_response_metadata": ["instance_url"],
        }
    )
    stored = config_to_store(
        template,
        {"subdomain": "acme", "instance_url": "https://attacker.example", "other": "kept"},
        callback_query={"subdomain": "attacker", "realmId": "123", "code": "c"},
        token_response={"access_token": "t", "instance_url": "https://acme.my.example.com"},
    )
    assert stored == {
        "subdomain": "acme",
        "other": "kept",
        "realmId": "123",
        "instance_url": "https://acme.my.example.com",
    }
    without = config_to_store(
        template, {"instance_url": "https://attacker.example"}, callback_query={}, token_response={"access_token": "t"}
    )
    assert "instance_url" not in without  # a browser's value never stands in for the provider's


# Values a real user would give, for fields that declare no example.
_PLAUSIBLE = {
    "installation_id": "12345678",
    "partnerId": "12345",
    "appId": "my-app",
    "applicationKey": "0123456789abcdef0123456789abcdef01234567",
    "apiKeyHeader": "abcdefghijklmnopqrstuvwx",
    "userEmail": "someone@example.com",
    "firmId": "1234",
}
# What the proxy adds per request for headers that sign it (Duo's canonical parameters, a body digest).
_REQUEST = {
    "method": "GET",
    "host": "api.example.com",
    "path": "/v1/items",
    "endpoint": "/v1/items",
    "params": "limit=1",
}
_REQUEST |= {"urlCanonicalParams": "limit=1", "bodyCanonicalParams": "a=1", "contentType": "application/json"}


def _pem_ed25519_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def _whole_origin(template: ProviderTemplate, name: str) -> bool:
    """A token-response field a URL starts with (Salesforce's instance_url): an origin, not a host."""
    head = "${connectionConfig." + name + "}"
    return name in template.token_response_metadata and any(url.startswith(head) for url in template.template_urls())


def _plausible(template: ProviderTemplate) -> dict[str, Any]:
    values: dict[str, Any] = {"apiKey": "key-123", "accessToken": "token-123"}
    # What the proxy adds for ${credentials.username}-style headers (the stored credentials' fields).
    # (A signing key as the password: some providers' headers sign each request with it.)
    values["credentials"] = {"username": "user", "password": _pem_ed25519_key(), "raw": {"id_token": "id-123"}}
    # The integration's client (some headers name it) and what the proxy knows of the request.
    values |= {"clientId": "client-123", "clientSecret": "client-secret", **_REQUEST}
    for name, field in template.connection_config.items():
        field = field if isinstance(field, dict) else {}
        if field.get("format") == "uri" or _whole_origin(template, name):
            values[name] = "https://acme.example.com"
        elif "example" in field:
            values[name] = str(field["example"])
        else:
            values[name] = _PLAUSIBLE.get(name, "acme")
    if template.auth_mode == "TWO_STEP":  # ${credentials.x}: the person's fields, stored with the token
        values["credentials"] = dict.fromkeys(template.credentials, "cred-123") | {"token": "t", "_cookies": "a=b"}
        values.setdefault("endpoint", "/v1/items")  # a request's own variable (Avanan signs its endpoint)
    return values


def test_every_shipped_template_renders_with_plausible_values() -> None:
    catalog = load_catalog()
    failures: dict[str, str] = {}
    for name in catalog.names():
        template = catalog.get(name)
        assert template is not None
        values = _plausible(template)
        urls = template.template_urls()
        if template.auth_mode in {"APP", "CUSTOM"} and template.authorization_url:
            # The integration's own app link goes there, never a rendered template nor a browser's value.
            urls.remove(template.authorization_url)
            values.pop("appPublicLink", None)
        try:
            for url in urls:
                template.render_url(url, values, stored=True)
            for header in template.template_headers():
                template.render_header(header, values)
            not_config = {"apiKey", "accessToken", "credentials", "clientId", "clientSecret", *_REQUEST}
            given = {k: v for k, v in values.items() if k not in not_config}
            template.check_connection_config(given)
        except (UnsafeParamError, MissingParamError) as exc:
            failures[name] = str(exc)
    assert not failures, failures

"""The dashboard's pieces that need no server: password hashes, route parity, cookies, redirects, chart."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest

from auth_gateway.dashboard import hash_password as hash_password_cli
from auth_gateway.dashboard.activity import Series
from auth_gateway.dashboard.api import PUBLIC_EQUIVALENT
from auth_gateway.dashboard.catalog import param_fields, search
from auth_gateway.dashboard.chart import outcome_chart
from auth_gateway.dashboard.pages import cookie_options, safe_next
from auth_gateway.dashboard.passwords import PasswordHashError, hash_password, verify_password
from auth_gateway.dashboard.render import TEMPLATES_DIR, template_environment
from auth_gateway.routes import ROUTES
from auth_gateway.settings import GatewaySettings
from keyway_shared.providers import load_catalog


def test_scrypt_hash_verifies_only_its_password() -> None:
    encoded = hash_password("correct horse battery staple")
    assert encoded.startswith("scrypt:16384:8:1:")
    assert "$" not in encoded  # no quoting needed in shells and compose files
    assert verify_password("correct horse battery staple", encoded)
    assert not verify_password("correct horse battery stapl", encoded)
    assert hash_password("same") != hash_password("same")  # salted


def test_pbkdf2_hashes_are_accepted_too() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw-from-elsewhere", salt, 200_000)
    encoded = f"pbkdf2_sha256:200000:{base64.b64encode(salt).decode()}:{base64.b64encode(digest).decode()}"
    assert verify_password("pw-from-elsewhere", encoded)
    assert not verify_password("other", encoded)
    weak = encoded.replace(":200000:", ":1000:")
    with pytest.raises(PasswordHashError):
        verify_password("pw-from-elsewhere", weak)


@pytest.mark.parametrize("bad", ["plain", "scrypt:1:2", "md5:abc:def", "scrypt:16384:8:1:!!:!!"])
def test_unreadable_hashes_are_refused_loudly(bad: str) -> None:
    with pytest.raises(PasswordHashError):
        verify_password("x", bad)


def test_no_configured_hash_never_verifies() -> None:
    assert verify_password("", None) is False


def test_hash_password_helper_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a password long enough\n"))
    assert hash_password_cli.main() == 0
    printed = capsys.readouterr().out.strip()
    assert verify_password("a password long enough", printed)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert hash_password_cli.main() == 1


def test_every_dashboard_action_has_its_public_route() -> None:
    served = {(r.method, r.path) for r in ROUTES}
    missing = {action: route for action, route in PUBLIC_EQUIVALENT.items() if route not in served}
    assert missing == {}


def test_dashboard_routes_are_documented_with_the_session_scheme_and_csrf_checked() -> None:
    dashboard = [r for r in ROUTES if r.path.startswith("/dashboard")]
    assert len(dashboard) > 20
    for route in dashboard:
        if route.path in {"/dashboard", "/dashboard/signin", "/dashboard/static/{name}"}:
            assert route.auth == "none"
            continue
        assert route.auth == "dashboard_session", route.path
        # The @page wrapper (session, environment, CSRF on every POST) wraps every signed-in view.
        assert hasattr(route.handler, "__wrapped__"), route.path


def test_session_cookie_is_secure_when_served_over_https() -> None:
    plain = cookie_options(GatewaySettings(public_url="http://127.0.0.1:3003"))
    tls = cookie_options(GatewaySettings(public_url="https://keyway.example.com"))
    assert plain == {"path": "/dashboard", "httponly": True, "samesite": "Lax", "secure": False}
    assert tls["secure"] is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/dashboard/prod/activity?state=failed", "/dashboard/prod/activity?state=failed"),
        ("https://evil.example/dashboard/", "/home"),
        ("//evil.example/dashboard/x", "/home"),
        ("/dashboard/\\evil", "/home"),
        ("/connection/x", "/home"),
        (None, "/home"),
    ],
)
def test_sign_in_only_returns_inside_the_dashboard(value: str | None, expected: str) -> None:
    assert safe_next(value, "/home") == expected


def test_chart_escapes_names_and_draws_one_group_per_busy_bucket() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    series = Series(integration="<script>x</script>", succeeded=[0, 2, 0, 1], failed=[0, 1, 0, 0])
    svg = outcome_chart(series, since=since, until=since + timedelta(hours=4), peak=3)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("<g>") == 2
    assert svg.count('class="bar-fail"') == 1
    assert "3 succeeded, 1 failed" in svg


def test_catalog_search_and_param_fields() -> None:
    catalog = load_catalog(None)
    found = search(catalog, "zendesk")
    assert found[0].name == "zendesk"
    assert all("zendesk" in f"{e.name} {e.display_name}".lower() for e in found)
    assert search(catalog, "no such provider at all") == []
    template = catalog.get("zendesk")
    assert template is not None
    fields = param_fields(template)
    assert [(f.name, f.label, f.pattern) for f in fields] == [("subdomain", "Zendesk subdomain", "[a-z0-9_-]+")]


def test_every_template_compiles_and_stays_small() -> None:
    templates = template_environment()
    for path in sorted(TEMPLATES_DIR.glob("*.html")):
        assert path.stat().st_size < 20_000, path.name
        templates.get_template(path.name)

"""Keep-alive scheduling (issue 18): when a provider's idle refresh tokens are refreshed, and which."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyway_shared.credentials.shapes import ApiKeyCredentials, OAuth2Credentials
from keyway_shared.providers import load_catalog
from keyway_shared.refresh.policy import keep_alive_interval, kept_alive, next_refresh_at

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MARGIN = timedelta(minutes=15)


def test_the_keep_alive_falls_due_two_weeks_before_the_idle_deadline() -> None:
    assert keep_alive_interval(90) == timedelta(days=76)  # Microsoft
    assert keep_alive_interval(60) == timedelta(days=46)  # Xero
    assert keep_alive_interval(180) == timedelta(days=166)  # Google (six months)


def test_short_idle_lifetimes_keep_two_thirds_of_it() -> None:
    assert keep_alive_interval(3) == timedelta(days=2)
    assert keep_alive_interval(1) == timedelta(hours=16)


def test_no_idle_rule_means_no_keep_alive() -> None:
    assert keep_alive_interval(None) is None
    assert keep_alive_interval(0) is None
    assert next_refresh_at(None, issued_at=NOW, margin=MARGIN, obtained_at=NOW, keep_alive=None) is None


def test_credentials_without_expiry_are_due_for_their_keep_alive() -> None:
    due = next_refresh_at(None, issued_at=NOW, margin=MARGIN, obtained_at=NOW, keep_alive=timedelta(days=76))
    assert due == NOW + timedelta(days=76)


def test_the_sooner_of_expiry_and_keep_alive_wins() -> None:
    keep_alive = timedelta(days=76)
    hour = NOW + timedelta(hours=1)
    assert next_refresh_at(hour, issued_at=NOW, margin=MARGIN, obtained_at=NOW, keep_alive=keep_alive) == hour - MARGIN
    year = NOW + timedelta(days=365)
    assert next_refresh_at(year, issued_at=NOW, margin=MARGIN, obtained_at=NOW, keep_alive=keep_alive) == (
        NOW + keep_alive
    )


def test_the_keep_alive_counts_from_when_the_credentials_were_obtained() -> None:
    # Rewritten later (metadata, an expiry moved) without a new refresh token: still due from then.
    obtained = NOW - timedelta(days=70)
    due = next_refresh_at(None, issued_at=NOW, margin=MARGIN, obtained_at=obtained, keep_alive=timedelta(days=76))
    assert due == NOW + timedelta(days=6)


def test_only_a_refresh_token_is_kept_alive() -> None:
    assert kept_alive(OAuth2Credentials(access_token="at", refresh_token="rt"))
    assert not kept_alive(OAuth2Credentials(access_token="at"))
    assert not kept_alive(ApiKeyCredentials(apiKey="k"))


def test_the_catalog_declares_the_documented_idle_rules() -> None:
    catalog = load_catalog(None)
    documented = {"microsoft": 90, "microsoft-teams": 90, "outlook": 90, "one-drive": 90, "sharepoint-online": 90}
    documented |= {"microsoft-excel": 90, "google": 180, "google-drive": 180, "xero": 60, "github": None}
    for name, days in documented.items():
        template = catalog.get(name)
        assert template is not None, name
        assert template.refresh_token_idle_days == days, name

"""The dashboard's Connect form asks for what the template's connect route takes: an OAUTH2_CC
template that signs a client assertion (``private_key_jwt``) wants the private JWK, not a secret."""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from auth_gateway.dashboard.catalog import credential_fields
from keyway_shared.providers import ProviderTemplate
from keyway_shared.providers.catalog import check_entries

PINNED = Path(__file__).parents[1] / "sdk" / "node_modules" / "nango-providers-07110" / "providers.yaml"


def nango(*names: str) -> dict[str, ProviderTemplate]:
    raw = yaml.safe_load(PINNED.read_text(encoding="utf-8"))
    chosen = {name: raw[name] for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return check_entries(chosen, dict.fromkeys(chosen, "pinned")).templates


def test_private_key_jwt_asks_for_the_private_key_instead_of_the_secret() -> None:
    templates = nango("okta-cc", "auth0-cc")
    okta = [(f.name, f.kind, f.required) for f in credential_fields(templates["okta-cc"])]
    assert okta == [("client_id", "text", True), ("client_private_key", "textarea", True)]
    auth0 = [f.name for f in credential_fields(templates["auth0-cc"])]
    assert auth0 == ["client_id", "client_secret"]


def test_no_template_no_fields() -> None:
    assert credential_fields(None) == []

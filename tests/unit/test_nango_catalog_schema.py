"""Nango's current provider catalog, pinned in tests/sdk/package.json (``nango-providers-07110``,
npm @nangohq/providers 0.71.10), loads as Keyway templates: every entry of a mode Keyway supports
validates, and the others are skipped as unsupported, none refused. The counts are asserted so that
a new pin that changes them is noticed and read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from keyway_shared.providers import load_catalog
from keyway_shared.providers.catalog import check_files

CATALOG = Path(__file__).resolve().parents[1] / "sdk" / "node_modules" / "nango-providers-07110" / "providers.yaml"

# Nango 0.71.10: 1013 entries, every one of a mode Keyway connects.
LOADED = {"OAUTH2": 354, "API_KEY": 332, "OAUTH2_CC": 112, "BASIC": 99, "OAUTH1": 4, "NONE": 2}
LOADED |= {"APP": 1, "CUSTOM": 1, "TBA": 1}
LOADED |= {"MCP_OAUTH2": 30, "MCP_OAUTH2_GENERIC": 2, "JWT": 4, "SIGNATURE": 1}
LOADED |= {"AWS_SIGV4": 1, "BILL": 2, "INSTALL_PLUGIN": 1, "TWO_STEP": 66}
UNSUPPORTED: dict[str, int] = {}


@pytest.fixture(scope="module")
def catalog_file() -> str:
    if not CATALOG.is_file():
        pytest.fail(f"{CATALOG} is missing: run make test-deps (it installs tests/sdk's pinned npm packages)")
    return str(CATALOG)


def test_every_supported_entry_of_nango_s_catalog_validates(catalog_file: str) -> None:
    result = check_files([catalog_file])
    loaded = dict(result.loaded_by_mode())
    unsupported = dict(Counter(result.unsupported.values()))
    print(
        f"Nango 0.71.10: loaded {sum(loaded.values())} {loaded}; unsupported {sum(unsupported.values())} {unsupported}"
    )
    assert [str(problem) for problem in result.problems] == []
    assert loaded == LOADED
    assert unsupported == UNSUPPORTED
    assert sum(loaded.values()) + sum(unsupported.values()) == 1013


def test_an_operator_may_point_the_gateway_at_nango_s_whole_file(catalog_file: str) -> None:
    catalog = load_catalog(catalog_file)
    salesforce = catalog.get("salesforce")
    assert salesforce is not None
    assert salesforce.render_url(salesforce.token_url_for() or "", {}) == (
        "https://login.salesforce.com/services/oauth2/token"
    )
    shopify = catalog.get("shopify")
    assert shopify is not None
    assert shopify.token_params["expiring"] == "1"
    github = catalog.get("github")
    assert github is not None
    assert github.proxy is not None
    assert github.proxy.retry is not None
    assert github.proxy.retry.at == ["x-ratelimit-reset"]
    intacct = catalog.get("sage-intacct")  # TWO_STEP: its XML body kept whole, its text parameters none
    assert intacct is not None
    assert intacct.token_body["request"]["control"]["uniqueid"] is False
    assert intacct.token_params == {}

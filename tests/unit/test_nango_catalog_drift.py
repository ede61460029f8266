"""Keyway's provider catalog against Nango's (@nangohq/providers 0.71.10), provider by provider.

Every difference must be listed, with its reason, in docs/provider-differences.yaml, and every listed
one must still exist: drift from Nango's catalog is a decision, not an accident. The comparison
itself (``keyway providers diff``) is checked on small catalogs first.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyway_cli.main import build_parser
from keyway_cli.provider_diff import (
    FIELDS,
    FieldDifference,
    compare,
    diff_command,
    kept_differences,
    load_nango_catalog,
    print_differences,
    resolve_aliases,
    unexplained,
)
from keyway_shared.providers import ProviderCatalog, ProviderTemplate, load_catalog

ROOT = Path(__file__).resolve().parents[2]
NANGO_07110 = ROOT / "tests/sdk/node_modules/nango-providers-07110/providers.yaml"
KEPT = ROOT / "docs/provider-differences.yaml"


def _catalog(entries: dict[str, dict[str, Any]]) -> ProviderCatalog:
    raw = resolve_aliases(entries)
    return ProviderCatalog({name: ProviderTemplate.model_validate(entry) for name, entry in raw.items()}, raw)


def _fields(differences: dict[str, list[FieldDifference]], provider: str) -> dict[str, tuple[Any, Any]]:
    return {d.field: (d.keyway, d.nango) for d in differences.get(provider, [])}


def test_defaults_spelled_out_or_left_implicit_do_not_differ() -> None:
    ours = {
        "acme": {
            "auth_mode": "OAUTH2",
            "authorization_url": "https://acme.example/authorize",
            "token_url": "https://acme.example/token",
            "authorization_params": {"response_type": "code"},
            "token_params": {"grant_type": "authorization_code", "audience": "x"},
            "scope_separator": " ",
            "disable_pkce": False,
            "proxy": {"base_url": "https://api.acme.example/", "headers": {"X-Version": "1"}},
        }
    }
    theirs = {
        "acme": {
            "auth_mode": "OAUTH2",
            "authorization_url": "https://acme.example/authorize",
            "token_url": "https://acme.example/token",
            "token_params": {"audience": "x"},
            "refresh_params": {"audience": "x", "grant_type": "refresh_token"},
            "proxy": {"base_url": "https://api.acme.example", "headers": {"x-version": "1"}},
        }
    }
    assert compare(_catalog(ours), theirs) == {}


def test_each_compared_field_reports_both_values() -> None:
    ours: dict[str, dict[str, Any]] = {
        "acme": {
            "auth_mode": "OAUTH2",
            "authorization_url": "https://acme.example/authorize",
            "token_url": "https://acme.example/token",
            "scope_separator": ",",
            "authorization_method": "header",
            "proxy": {"base_url": "https://api.acme.example/v3"},
            "connection_config": {"host": {"type": "string"}},
        },
        "only-keyway": {"auth_mode": "NONE"},
    }
    theirs: dict[str, dict[str, Any]] = {
        "acme": {
            "auth_mode": "OAUTH2",
            "authorization_url": "https://${connectionConfig.region}.acme.example/authorize || https://acme.example/authorize",
            "token_url": "https://acme.example/token",
            "token_request_auth_method": "basic",
            "proxy": {"base_url": "https://api.acme.example"},
            "connection_config": {"region": {"type": "string"}},
        },
        "only-nango": {"auth_mode": "NONE"},
    }
    found = _fields(compare(_catalog(ours), theirs), "acme")
    assert found == {
        "authorization_url": (
            "https://acme.example/authorize",
            "https://${connectionConfig.region}.acme.example/authorize || https://acme.example/authorize",
        ),
        "proxy.base_url": ("https://api.acme.example/v3", "https://api.acme.example"),
        "scope_separator": (",", " "),
        "authorization_method": ("header", "body"),
        "token_request_auth_method": (None, "basic"),
        "connection_config.variables": ([], ["region"]),
        "connection_config.fields": (["host"], ["region"]),
    }
    assert set(found) <= set(FIELDS)


def test_a_deprecated_name_kept_for_stored_connections_is_not_a_difference() -> None:
    ours: dict[str, dict[str, Any]] = {
        "okta": {
            "auth_mode": "API_KEY",
            "proxy": {
                "base_url": "https://${connectionConfig.hostname} || https://${connectionConfig.subdomain}.okta.com",
                "headers": {"authorization": "SSWS ${apiKey}"},
            },
            "connection_config": {
                "hostname": {"type": "string"},
                "subdomain": {"type": "string", "hidden": True, "deprecated": True},
            },
        }
    }
    theirs = {
        "okta": {
            "auth_mode": "API_KEY",
            "proxy": {
                "base_url": "https://${connectionConfig.hostname}",
                "headers": {"authorization": "SSWS ${apiKey}"},
            },
            "connection_config": {"hostname": {"type": "string"}},
        }
    }
    assert compare(_catalog(ours), theirs) == {}
    # Without the marker the same alternative is a difference like any other.
    ours["okta"]["connection_config"]["subdomain"] = {"type": "string", "hidden": True}
    assert set(_fields(compare(_catalog(ours), theirs), "okta")) == {
        "proxy.base_url",
        "connection_config.variables",
        "connection_config.fields",
    }


def test_aliases_resolve_as_both_catalogs_resolve_them() -> None:
    nango = resolve_aliases(
        {
            "base": {"auth_mode": "OAUTH2", "authorization_url": "https://a", "proxy": {"base_url": "https://b"}},
            "child": {"alias": "base", "proxy": {"base_url": "https://c"}},
        }
    )
    assert nango["child"] == {
        "auth_mode": "OAUTH2",
        "authorization_url": "https://a",
        "proxy": {"base_url": "https://c"},
    }


def test_the_kept_list_names_compared_fields_with_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "kept.yaml"
    bad.write_text("acme:\n  proxy.baseurl: typo\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a compared field"):
        kept_differences(bad)
    bad.write_text("acme:\n  proxy.base_url: ''\n", encoding="utf-8")
    with pytest.raises(ValueError, match="say why"):
        kept_differences(bad)


def test_providers_diff_exits_1_on_an_unlisted_difference(tmp_path: Path) -> None:
    nango = tmp_path / "providers.yaml"
    github: dict[str, Any] = {"auth_mode": "OAUTH2", "authorization_url": "https://github.com/login/oauth/authorize"}
    github |= {
        "token_url": "https://github.com/login/oauth/access_token",
        "proxy": {"base_url": "https://api.github.com/"},
    }
    nango.write_text(yaml.safe_dump({"github": github}), encoding="utf-8")
    parser = build_parser()
    out = io.StringIO()
    assert diff_command(parser.parse_args(["providers", "diff", str(nango)]), out=out) == 0
    assert "0 providers differ" in out.getvalue()

    github["proxy"] = {"base_url": "https://api.github.com/v3"}
    nango.write_text(yaml.safe_dump({"github": github}), encoding="utf-8")
    out = io.StringIO()
    assert diff_command(parser.parse_args(["providers", "diff", str(nango)]), out=out) == 1
    assert "github:\n  proxy.base_url:" in out.getvalue()

    kept = tmp_path / "kept.yaml"
    kept.write_text("github:\n  proxy.base_url: a test's reason\n", encoding="utf-8")
    out = io.StringIO()
    assert diff_command(parser.parse_args(["providers", "diff", str(nango), "--kept", str(kept)]), out=out) == 0
    assert "(kept: a test's reason)" in out.getvalue()


def _report(differences: dict[str, list[FieldDifference]], new: list[FieldDifference]) -> str:
    lines = []
    for provider in sorted({d.provider for d in new}):
        lines.append(f"{provider}:")
        for diff in differences[provider]:
            if diff in new:
                lines.append(f"  {diff.field}: keyway {diff.keyway!r}, nango {diff.nango!r}")
    return "\n".join(lines)


def test_the_catalog_differs_from_nango_0_71_10_only_where_listed() -> None:
    if not NANGO_07110.exists():
        pytest.fail(f"{NANGO_07110.relative_to(ROOT)} is missing: run make test-deps")
    differences = compare(load_catalog(), load_nango_catalog(NANGO_07110))
    kept = kept_differences(KEPT)
    print_differences(differences, sys.stdout, kept)  # what still differs, provider by provider (pytest -rP)
    new, gone = unexplained(differences, kept)
    problems = []
    if new:
        problems.append(
            "differences from Nango's catalog not listed in docs/provider-differences.yaml "
            "(correct the template, or list the difference with its reason):\n" + _report(differences, new)
        )
    if gone:
        listed = "\n".join(f"  {provider}.{field}" for provider, field in gone)
        problems.append(f"listed in docs/provider-differences.yaml but no longer different (remove them):\n{listed}")
    assert not problems, "\n\n".join(problems)

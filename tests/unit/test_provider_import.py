"""``keyway providers import-nango``: Nango's entries drafted as Keyway's, with the catalog's rules
applied and the entries Keyway could not connect refused with their reason."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import yaml

from keyway_cli.main import build_parser
from keyway_cli.provider_import import HEADERS_REASON, QUERY_REASON, Draft, draft_entries, family_of, import_command
from keyway_shared.providers.catalog import check_files

KEYWAY = {
    "acme-base": {
        "display_name": "Acme",
        "auth_mode": "OAUTH2",
        "authorization_url": "https://acme.example/authorize",
        "token_url": "https://acme.example/token",
        "proxy": {"base_url": "https://api.acme.example"},
    }
}


def _drafts(nango: dict[str, Any], links: dict[str, str] | None = None) -> tuple[dict[str, Draft], dict[str, str]]:
    drafts, refused = draft_entries(nango, KEYWAY, links)
    return {d.name: d for d in drafts}, {r.name: r.reason for r in refused}


def _api_key(**proxy: Any) -> dict[str, Any]:
    return {
        "display_name": "Widgets",
        "auth_mode": "API_KEY",
        "categories": ["popular", "crm"],
        "proxy": {"base_url": "https://api.widgets.example", "headers": {"x-api-key": "${apiKey}"}, **proxy},
        "docs": "https://nango.dev/docs/integrations/all/widgets",
        "docs_connect": "https://nango.dev/docs/integrations/all/widgets/connect",
        "webhook_routing_script": "widgetsWebhookRouting",
    }


def test_generic_content_headers_are_dropped_and_vendor_media_types_kept() -> None:
    headers = {"x-api-key": "${apiKey}", "Content-Type": "application/json", "accept": "application/json"}
    vendor = {"x-api-key": "${apiKey}", "accept": "application/vnd.widgets.v2+json"}
    drafts, _ = _drafts({"widgets": _api_key(headers=headers), "gadgets": _api_key(headers=vendor)})
    assert drafts["widgets"].entry["proxy"]["headers"] == {"x-api-key": "${apiKey}"}
    assert drafts["widgets"].differences == {"proxy.headers": HEADERS_REASON}
    assert drafts["gadgets"].entry["proxy"]["headers"] == vendor
    assert drafts["gadgets"].differences == {}


def test_keyway_s_shape_nango_s_server_scripts_and_guides_left_out() -> None:
    widgets = _api_key()
    widgets["credentials"] = {"apiKey": {"type": "string", "title": "API key", "doc_section": "#step-1"}}
    drafts, _ = _drafts({"widgets": widgets}, {"widgets": "http://developers.widgets.example/api"})
    entry = drafts["widgets"].entry
    assert list(entry) == ["display_name", "auth_mode", "proxy", "credentials", "docs", "categories"]
    assert entry["credentials"] == {"apiKey": {"type": "string", "title": "API key"}}
    assert entry["docs"] == "https://developers.widgets.example/api"  # the provider's own, in https
    assert entry["categories"] == ["crm"]  # "popular" says nothing of what it does
    assert drafts["widgets"].family == "crm"


def test_fixed_query_parameters_leave_the_oauth_urls() -> None:
    nango = {
        "cc": {
            "display_name": "CC",
            "auth_mode": "OAUTH2_CC",
            "token_url": "https://auth.cc.example/token?grant_type=client_credentials&audience=api",
            "proxy": {"base_url": "https://api.cc.example", "verification": {"endpoints": ["me"]}},
        }
    }
    drafts, _ = _drafts(nango)
    entry = drafts["cc"].entry
    assert entry["token_url"] == "https://auth.cc.example/token"
    assert entry["token_params"] == {"audience": "api"}  # grant_type goes in every such body anyway
    assert drafts["cc"].differences == {"token_url": QUERY_REASON, "token_params": QUERY_REASON}
    assert "verification" not in entry["proxy"]  # Keyway verifies API keys and Basic only
    assert drafts["cc"].notes


def test_verification_endpoints_become_paths() -> None:
    drafts, _ = _drafts({"widgets": _api_key(verification={"method": "GET", "endpoints": ["v1/me", "/v2/me"]})})
    assert drafts["widgets"].entry["proxy"]["verification"]["endpoints"] == ["/v1/me", "/v2/me"]


def test_entries_keyway_could_not_connect_are_refused_with_the_reason() -> None:
    in_body = _api_key(body={"key": "${apiKey}"})
    in_body["proxy"].pop("headers")
    typed_origin = _api_key(base_url="${connectionConfig.baseUrl}")
    typed_origin["connection_config"] = {"baseUrl": {"type": "string", "title": "Base URL"}}
    unfilled = _api_key(base_url="https://api.widgets.example/${connectionConfig.edition}")
    unfilled["connection_config"] = {"edition": {"type": "string", "automated": True}}
    query_variable = {
        "display_name": "Q",
        "auth_mode": "OAUTH2",
        "authorization_url": "https://q.example/authorize",
        "token_url": "https://q.example/token?key=${connectionConfig.key}",
        "proxy": {"base_url": "https://api.q.example"},
        "connection_config": {"key": {"type": "string"}},
    }
    _, refused = _drafts({"body": in_body, "origin": typed_origin, "edition": unfilled, "query": query_variable})
    assert "request body or the URL path" in refused["body"]
    assert "whole URL typed by a person" in refused["origin"]
    assert "nothing fills ${connectionConfig.edition}" in refused["edition"]
    assert "variable in its query string" in refused["query"]


def test_a_fallback_or_the_token_response_fills_what_no_person_types() -> None:
    fallback = _api_key(headers={"x-api-key": "${apiKey}", "x-version": "${connectionConfig.version} || 2024-01-01"})
    fallback["connection_config"] = {"version": {"type": "string", "automated": True}}
    origin = {
        "display_name": "Origin",
        "auth_mode": "OAUTH2",
        "authorization_url": "https://o.example/authorize",
        "token_url": "https://o.example/token",
        "token_response_metadata": ["api.endpoint"],
        "proxy": {"base_url": "${connectionConfig.api.endpoint}"},
    }
    drafts, refused = _drafts({"fallback": fallback, "origin": origin})
    assert refused == {}
    declared = drafts["origin"].entry["connection_config"]["api.endpoint"]
    assert declared["automated"] is True
    assert "connection_config.fields" in drafts["origin"].differences


def test_a_host_field_takes_a_host_name() -> None:
    scheme = _api_key(base_url="https://${connectionConfig.host}/api")
    scheme["connection_config"] = {
        "host": {"type": "string", "pattern": "^https?://.+$", "example": "https://w.acme.com"}
    }
    path = _api_key(base_url="https://${connectionConfig.host}/api")
    path["connection_config"] = {"host": {"type": "string", "example": "acme.widgets.example/main"}}
    drafts, refused = _drafts({"scheme": scheme, "path": path})
    field = drafts["scheme"].entry["connection_config"]["host"]
    assert field["example"] == "w.acme.com"
    assert yaml.safe_load(yaml.safe_dump(field))["pattern"] == field["pattern"]
    assert re.search(field["pattern"], "w.acme.com")
    assert not re.search(field["pattern"], "https://w.acme.com")
    assert "host and a path" in refused["path"]


def test_an_alias_is_read_over_keyway_s_entry_and_a_nango_user_agent_names_keyway() -> None:
    nango = {
        "acme-product": {
            "display_name": "Acme Product",
            "alias": "acme-base",
            "proxy": {
                "base_url": "https://product.acme.example",
                "headers": {"user-agent": "Nango (https://nango.dev)"},
            },
        }
    }
    drafts, _ = _drafts(nango)
    entry = drafts["acme-product"].entry
    assert entry["alias"] == "acme-base"
    assert entry["proxy"]["headers"] == {"user-agent": "Keyway"}


def test_families() -> None:
    assert family_of("google-health", ["other"]) == "google"
    assert family_of("microsoft-word", ["productivity"]) == "microsoft"
    assert family_of("acme", ["popular", "banking"]) == "payments"
    assert family_of("acme", ["sports"]) == "other"


def test_the_command_writes_drafts_that_load(tmp_path: Path) -> None:
    nango_file = tmp_path / "providers.yaml"
    body = _api_key(body={"key": "${apiKey}"})
    body["proxy"].pop("headers")
    nango = {"github": {"display_name": "GitHub", "auth_mode": "OAUTH2"}, "widgets-x": _api_key(), "body-x": body}
    nango_file.write_text(yaml.safe_dump(nango), encoding="utf-8")
    out_dir = tmp_path / "drafts"
    args = build_parser().parse_args(["providers", "import-nango", str(nango_file), "--out", str(out_dir)])
    out = io.StringIO()
    assert import_command(args, out=out) == 0
    assert out.getvalue().strip().endswith("drafted: 1, refused: 1")  # github: Keyway has it already
    assert sorted(p.name for p in out_dir.iterdir()) == ["crm.yaml", "differences.yaml", "refused.txt"]
    assert "body-x:" in (out_dir / "refused.txt").read_text(encoding="utf-8")
    check = check_files([str(out_dir / "crm.yaml")])
    assert check.problems == []
    assert list(check.templates) == ["widgets-x"]


def test_a_file_that_is_not_a_catalog_is_an_error(tmp_path: Path) -> None:
    nango_file = tmp_path / "providers.yaml"
    nango_file.write_text("- a list\n", encoding="utf-8")
    args = build_parser().parse_args(["providers", "import-nango", str(nango_file)])
    out = io.StringIO()
    assert import_command(args, out=out) == 2
    assert "not a mapping" in out.getvalue()

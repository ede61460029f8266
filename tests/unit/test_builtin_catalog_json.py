"""``builtin.json``: the built-in provider catalog as services read it, generated from the YAML files.

A service trusts its entries as checked (it validates only what an operator's file changes), so
this is where they are checked: the file must be exactly what the YAML files generate, read back
to the same entries, and every entry must load as :func:`check_entries` would have it at start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keyway_shared.providers import CatalogError, load_catalog
from keyway_shared.providers import catalog as catalog_module
from keyway_shared.providers.builtin_json import builtin_json_path, expected_text, main
from keyway_shared.providers.catalog import REGENERATE_BUILTIN_JSON, check_entries

YAML_ENTRIES, YAML_ORIGINS = catalog_module._parse_builtin()


def test_builtin_json_is_what_the_yaml_files_generate() -> None:
    current = builtin_json_path().read_text(encoding="utf-8")
    assert current == expected_text(), (
        f"shared/keyway_shared/providers/builtin.json is stale: run `{REGENERATE_BUILTIN_JSON}` and commit it"
    )


def test_builtin_json_holds_the_yaml_entries_file_by_file() -> None:
    by_origin: dict[str, dict[str, Any]] = {}
    for name, entry in YAML_ENTRIES.items():
        by_origin.setdefault(YAML_ORIGINS[name], {})[name] = entry
    assert json.loads(builtin_json_path().read_text(encoding="utf-8")) == by_origin


def test_the_index_reads_back_every_entry_and_its_file() -> None:
    index = catalog_module._builtin_index()
    assert index.entries() == (YAML_ENTRIES, YAML_ORIGINS)
    assert list(index.order) == list(YAML_ENTRIES)  # the files' order, which alias resolution follows
    assert index.aliases == {name: e["alias"] for name, e in YAML_ENTRIES.items() if isinstance(e.get("alias"), str)}


def test_every_builtin_entry_loads_as_a_check_at_start_would_have_it() -> None:
    """What lets a service skip checking the built-in catalog at start: nothing in it is refused or
    skipped, and what the catalog serves is the entry the check resolved."""
    check = check_entries(YAML_ENTRIES, YAML_ORIGINS)
    assert check.problems == []
    assert check.unsupported == {}
    catalog = load_catalog()
    assert catalog.names() == sorted(check.resolved)
    for name, resolved in check.resolved.items():
        assert catalog.raw(name) == resolved, name
    assert catalog.get("github-app") == check.templates["github-app"]


def test_check_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    stale = tmp_path / "builtin.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr("keyway_shared.providers.builtin_json.builtin_json_path", lambda: stale)
    assert main(["check"]) == 1
    assert REGENERATE_BUILTIN_JSON in capsys.readouterr().err
    assert main(["write"]) == 0
    assert stale.read_text(encoding="utf-8") == expected_text()
    assert main(["check"]) == 0


def test_a_built_in_entry_is_a_fresh_dict_each_time() -> None:
    catalog = load_catalog()
    first = catalog.raw("github")
    assert first is not None
    first["display_name"] = "changed"
    assert catalog.raw("github") == YAML_ENTRIES["github"]


def test_loading_the_built_in_catalog_parses_no_yaml() -> None:
    code = (
        "import sys\n"
        "from keyway_shared.providers import load_catalog\n"
        "catalog = load_catalog()\n"
        "assert catalog.get('github') is not None\n"
        "assert 'yaml' not in sys.modules, 'yaml imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# An operator's file is still checked at every load, with every built-in entry it changes.


def _operator_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_an_operator_file_with_a_bad_entry_is_refused(tmp_path: Path) -> None:
    extra = _operator_file(tmp_path, "acme:\n  auth_mode: OAUTH2\n  proxy:\n    retry:\n      at: 12\n")
    with pytest.raises(CatalogError, match=r"providers\.yaml: provider 'acme' field proxy\.retry\.at: "):
        load_catalog(extra)


def test_an_operator_file_replacing_a_built_in_entry_badly_is_refused(tmp_path: Path) -> None:
    extra = _operator_file(tmp_path, "github:\n  auth_mode: TELEPATHY\n")
    with pytest.raises(CatalogError, match=r"provider 'github' field auth_mode"):
        load_catalog(extra)
    broken = _operator_file(tmp_path, "github: 42\n")
    with pytest.raises(CatalogError, match=r"provider 'github': is not a mapping \(and \d+ more bad entries\)"):
        load_catalog(broken)  # the more: the built-in entries aliasing github (github-app, ...)


def test_a_built_in_alias_follows_the_operator_entry_it_aliases(tmp_path: Path) -> None:
    extra = _operator_file(
        tmp_path,
        "github:\n  auth_mode: OAUTH2\n  display_name: Our GitHub\n  proxy:\n    base_url: https://ghe.example\n",
    )
    catalog = load_catalog(extra)
    app = catalog.get("github-app")
    assert app is not None
    assert app.proxy is not None
    assert app.proxy.base_url == "https://ghe.example"  # github-app's own keys win, the rest is the operator's
    assert app.auth_mode == "APP"
    raw = catalog.raw("github-app")
    assert raw is not None
    assert raw["display_name"] == "GitHub App"
    assert len(catalog) == len(YAML_ENTRIES)


def test_an_operator_entry_of_a_mode_keyway_lacks_hides_the_built_in_one(tmp_path: Path) -> None:
    extra = _operator_file(tmp_path, "posthog:\n  auth_mode: TABLEAU\n")
    catalog = load_catalog(extra)
    assert "posthog" not in catalog
    assert catalog.get("posthog") is None
    assert catalog.raw("posthog") is None
    assert "posthog" not in catalog.names()
    assert len(catalog) == len(YAML_ENTRIES) - 1

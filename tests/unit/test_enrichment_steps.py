"""The declarative post-connection steps: what a template may write, what the catalog refuses (naming
the provider and the field), and how paths read a provider's answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from keyway_shared.providers import CatalogError, load_catalog
from keyway_shared.providers.enrichment import PostConnectionStep, parse_path
from keyway_shared.providers.enrichment.hooks import HOOKS, NO_OP
from keyway_shared.providers.enrichment.runner import program_for

USERINFO = {
    "accounts": [
        {"account_id": "other", "is_default": False, "base_uri": "https://eu.docusign.net"},
        {"account_id": "mine", "is_default": True, "base_uri": "https://demo.docusign.net"},
    ],
    "resource": {"type": "Company", "uuid": "c-1"},
    "data": [["ALICE", 12]],
}


@pytest.mark.parametrize(
    ("path", "found", "value"),
    [
        ("accounts[is_default=true].account_id", True, "mine"),
        ("accounts[is_default=false].base_uri", True, "https://eu.docusign.net"),
        ("accounts.0.account_id", True, "other"),
        ("accounts.2.account_id", False, None),
        ("resource[type=Company].uuid", True, "c-1"),
        ("resource[type=Employee].uuid", False, None),
        ("data.0.0", True, "ALICE"),
        ("data.0.1", True, 12),
        ("missing.key", False, None),
        ("accounts", True, USERINFO["accounts"]),
    ],
)
def test_paths_read_answers(path: str, found: bool, value: Any) -> None:
    assert parse_path(path).find(USERINFO) == (found, value)


@pytest.mark.parametrize("bad", ["", " a", "a..b", "a[b]", "[=x]", "a]b", "a.[x=1"])
def test_malformed_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="path"):
        parse_path(bad)


def test_a_step_reads_its_short_and_long_forms() -> None:
    step = PostConnectionStep.model_validate(
        {
            "request": {"endpoint": "/users/me"},
            "set": {
                "organizationId": {"path": "resource.current_organization", "as": "last_path_segment"},
                "name": "resource.name",
            },
            "overwrite": False,
        }
    )
    answer = {"resource": {"current_organization": "https://api.calendly.com/organizations/ORG1/", "name": "J"}}
    assert step.set["organizationId"].value_in(answer) == (True, "ORG1")
    assert step.set["name"].value_in(answer) == (True, "J")
    assert step.request is not None
    assert step.request.method == "GET"
    text = PostConnectionStep.model_validate({"read": "token_response", "set": {"n": {"path": "n", "as": "text"}}})
    assert text.set["n"].value_in({"n": 42}) == (True, "42")
    assert text.model_dump(by_alias=True)["set"]["n"] == {"path": "n", "as": "text"}  # paths dump as written


@pytest.mark.parametrize(
    ("step", "complaint"),
    [
        ({"set": {"a": "b"}}, "exactly one of 'request'"),
        ({"request": {"endpoint": "/x"}, "read": "token_response", "set": {"a": "b"}}, "exactly one of 'request'"),
        ({"read": "token_response"}, "must 'set' at least one field"),
        ({"read": "id_token", "set": {"a": "b"}}, "access_token_claims"),
        ({"request": {"endpoint": "https://evil.example/x"}, "set": {"a": "b"}}, "base_url_override"),
        ({"request": {"endpoint": "/x", "method": "DELETE"}, "set": {"a": "b"}}, "method"),
        ({"request": {"endpoint": "/x"}, "set": {"a b": "c"}}, "letters, digits"),
        ({"request": {"endpoint": "/x"}, "set": {"a": "b..c"}}, "path"),
        ({"request": {"endpoint": "/x"}, "set": {"a": {"path": "b", "as": "upper"}}}, "as"),
        ({"request": {"endpoint": "/x"}, "sett": {"a": "b"}}, "sett"),
    ],
)
def test_bad_steps_are_refused(step: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        PostConnectionStep.model_validate(step)


def test_a_bad_step_is_a_catalog_error_naming_provider_and_field(tmp_path: Path) -> None:
    entry = {
        "auth_mode": "OAUTH2",
        "authorization_url": "https://example.com/authorize",
        "token_url": "https://example.com/token",
        "post_connection": [{"request": {"endpoint": "/me"}, "set": {"portalId": "portal..Id"}}],
    }
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"broken-enrichment": entry}))
    with pytest.raises(CatalogError) as caught:
        load_catalog(str(path))
    message = str(caught.value)
    assert "broken-enrichment" in message
    assert "post_connection.0.set.portalId" in message


def test_every_builtin_program_is_known() -> None:
    """Each script name the built-in catalog gives runs something: its steps, a hook, or a declared no-op."""
    catalog = load_catalog()
    named = 0
    for name in catalog.names():
        template = catalog.get(name)
        assert template is not None
        program = program_for(template, name)
        assert program.problem is None, f"{name}: {program.problem}"
        script = template.post_connection_script
        if script:
            named += 1
            assert template.post_connection or script in HOOKS or script in NO_OP, name
    assert named >= 20


def test_a_nango_entry_brought_as_it_is_runs_keyways_steps() -> None:
    """``post_connection_script: hubspotPostConnection`` alone (Nango's entry) runs the built-in steps;
    DocuSign's sandbox keeps its own origin."""
    catalog = load_catalog()
    bare = catalog.get("hubspot")
    assert bare is not None
    nango_like = bare.model_copy(update={"post_connection": []})
    program = program_for(nango_like, "hubspot")
    assert [s.request.endpoint for s in program.steps if s.request] == ["/account-info/v3/details"]
    sandbox = catalog.get("docusign-sandbox")
    assert sandbox is not None
    program = program_for(sandbox.model_copy(update={"post_connection": []}), "docusign-sandbox")
    assert [s.request.base_url_override for s in program.steps if s.request] == ["https://account-d.docusign.com"]
    unknown = bare.model_copy(update={"post_connection": [], "post_connection_script": "nopeConnection"})
    assert program_for(unknown, "hubspot").problem == "Keyway has no post-connection script named nopeConnection"


NANGO_CATALOG = (
    Path(__file__).resolve().parents[1] / "sdk" / "node_modules" / "nango-providers-07110" / "providers.yaml"
)


def test_every_script_name_of_nango_s_catalog_runs_something() -> None:
    """Nango's whole file, pinned in tests/sdk (make test-deps): every post_connection_script it names
    is a Keyway hook, a no-op Keyway states, or the steps of a built-in entry of that name."""
    if not NANGO_CATALOG.is_file():
        pytest.fail(f"{NANGO_CATALOG} is missing: run make test-deps")
    raw = yaml.safe_load(NANGO_CATALOG.read_text())
    named = {
        name: entry["post_connection_script"] for name, entry in raw.items() if entry.get("post_connection_script")
    }
    assert len(set(named.values())) >= 35
    catalog = load_catalog(str(NANGO_CATALOG))
    for name, script in named.items():
        template = catalog.get(name)
        assert template is not None, name
        assert template.post_connection == []  # Nango's entry as it is: only the name
        program = program_for(template, name)
        assert program.problem is None, f"{name}: {program.problem}"
        assert program.steps or program.hook or script in NO_OP, name

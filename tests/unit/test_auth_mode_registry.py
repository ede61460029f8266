"""The auth modes are listed once, and everything else derives from that list.

``keyway_shared.auth_modes`` holds the list (``AuthMode``) and each mode's facts; the gateway's
``connect/modes`` holds each mode's flow (``MODES``); each credentials type is a class of
``keyway_shared.credentials.shapes``. These tests hold them together, and read the source to keep
any other module from writing down modes of its own.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path
from typing import get_args

import pytest

import auth_gateway
import keyway_shared
from auth_gateway.connect import modes as connect_modes
from auth_gateway.connect.modes import FORM_ROUTES, LINK_FORMS, MODES, FormFlow, PopupFlow, form_route
from auth_gateway.dashboard.catalog import CONNECT_KIND, CREDENTIAL_FIELDS
from keyway_shared.auth_modes import AUTH_MODES, MODE_FACTS, mode_named
from keyway_shared.credentials.shapes import CREDENTIAL_SHAPES, NotImportedType

GATEWAY = Path(auth_gateway.__file__).resolve().parent
SHARED = Path(keyway_shared.__file__).resolve().parent
MODES_DIR = GATEWAY / "connect" / "modes"
# The modules of connect/modes that are not a mode: the spec's types, and a flow two modes share.
MODE_HELPERS = {"spec", "github_app"}
# Where the shared library may write modes down: the list and its facts, and one class per credentials type.
SHARED_LISTS = {SHARED / "auth_modes.py", SHARED / "credentials" / "shapes.py"}


def test_every_mode_has_its_facts_its_flow_and_nothing_else_does() -> None:
    assert set(MODE_FACTS) == set(AUTH_MODES)
    assert set(MODES) == set(AUTH_MODES)
    assert all(spec.mode == mode for mode, spec in MODES.items())


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_a_modes_flow_is_the_one_its_facts_announce(mode: str) -> None:
    spec = MODES[mode]  # type: ignore[index]
    browser = spec.facts.browser
    if browser == "popup":
        assert isinstance(spec.flow, PopupFlow)
    elif browser in ("form", "none"):
        assert isinstance(spec.flow, FormFlow)
        assert spec.flow.routes, "a form flow is posted somewhere"
        assert all(route.auth == "public_key" for route in spec.flow.routes)
    else:
        assert spec.flow is None  # no browser flow: its connections are imported
        assert spec.facts.imported_as is not None, "a mode without a flow can at least be imported"
    if spec.facts.typed:
        assert browser == "form", "only a form asks for typed credentials"


def test_every_mode_has_a_browser_flow() -> None:
    # TBA, the last mode without one, has its form since it was added through the registry alone.
    assert [mode for mode, spec in MODES.items() if spec.flow is None] == []


def test_each_mode_module_is_named_after_its_mode_and_registered() -> None:
    names = {module.name for module in pkgutil.iter_modules(connect_modes.__path__)}
    assert names - MODE_HELPERS == {mode.lower() for mode in AUTH_MODES}
    for mode, spec in MODES.items():
        module = getattr(connect_modes, mode.lower())
        assert module.SPEC is spec


def test_what_the_dashboard_and_the_links_read_comes_from_the_registry() -> None:
    popup = {mode for mode, facts in MODE_FACTS.items() if facts.browser == "popup"}
    assert {mode for mode, kind in CONNECT_KIND.items() if kind == "popup"} == popup
    assert set(CONNECT_KIND) == {mode for mode, facts in MODE_FACTS.items() if facts.browser is not None}
    assert set(CREDENTIAL_FIELDS) == {mode for mode, facts in MODE_FACTS.items() if facts.typed}
    assert set(LINK_FORMS) <= {mode for mode, facts in MODE_FACTS.items() if facts.browser == "form"}
    paths = [route.path for route in FORM_ROUTES]
    assert len(paths) == len(set(paths))
    sdk_paths = {mode: route.path for mode in AUTH_MODES if (route := form_route(mode)) is not None}
    assert sdk_paths["NONE"] == "/auth/unauthenticated/{providerConfigKey}"
    assert set(sdk_paths) == {mode for mode, facts in MODE_FACTS.items() if facts.browser in ("form", "none")}


def test_every_credentials_type_is_a_mode_name() -> None:
    assert set(CREDENTIAL_SHAPES) <= set(AUTH_MODES)
    for facts in MODE_FACTS.values():
        assert facts.imported_as is None or facts.imported_as in CREDENTIAL_SHAPES


def test_what_nangos_current_api_takes_of_a_mode_agrees_with_its_other_facts() -> None:
    refused = {mode for mode, facts in MODE_FACTS.items() if facts.connections_post == "refuse"}
    assert set(get_args(NotImportedType)) == refused  # the wire model's types are the facts'
    for mode, facts in MODE_FACTS.items():
        if facts.connections_post == "import":
            assert facts.imported_as == mode, "POST /connections' type is the mode, stored as itself"
        if facts.credentials_required or facts.quickstart:
            assert facts.integration_credentials is not None, "an integration of it holds an app"
        if facts.webhook_secret_clears:
            assert facts.integration_credentials == "oauth_client"


def test_a_name_is_a_mode_only_when_it_is_one() -> None:
    assert [mode_named(mode) for mode in AUTH_MODES] == list(AUTH_MODES)
    assert [mode_named(name) for name in ("oauth2", "MAGIC", None, 1, "")] == [None] * 5


def _mode_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of ``path`` that is an auth mode's name, ``__all__`` lists aside (a module
    may export a name such as ``API_KEY``, a JSON schema)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    exported: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            exported |= {id(inner) for inner in ast.walk(node.value)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in AUTH_MODES and id(node) not in exported
    ]


def _displays_of_modes(path: Path) -> list[int]:
    """The lines where ``path`` writes a set, list, tuple or dict of two or more auth mode names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        items = (
            node.keys
            if isinstance(node, ast.Dict)
            else node.elts
            if isinstance(node, ast.Set | ast.List | ast.Tuple)
            else []
        )
        named = [item for item in items if isinstance(item, ast.Constant) and item.value in AUTH_MODES]
        if len(named) >= 2:
            found.append(node.lineno)
    return found


def test_no_gateway_module_but_a_modes_own_names_a_mode() -> None:
    """A mode's name is written in its module of ``connect/modes`` and nowhere else in the gateway: a
    set of modes kept elsewhere is the drift this registry ends."""
    spelled = {
        str(path.relative_to(GATEWAY)): literals
        for path in sorted(GATEWAY.rglob("*.py"))
        if MODES_DIR not in path.parents and (literals := _mode_literals(path))
    }
    assert spelled == {}


def test_in_the_shared_library_only_the_list_and_the_credentials_types_gather_modes() -> None:
    gathered = {
        str(path.relative_to(SHARED)): lines
        for path in sorted(SHARED.rglob("*.py"))
        if path not in SHARED_LISTS and (lines := _displays_of_modes(path))
    }
    assert gathered == {}


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('__all__ = ["API_KEY"]\nAPI_KEY = {}\nFORMS = {"API_KEY", "BASIC"}\nif x == "TBA":\n    pass\n')
    assert _mode_literals(module) == [(3, "API_KEY"), (3, "BASIC"), (4, "TBA")]
    assert _displays_of_modes(module) == [3]

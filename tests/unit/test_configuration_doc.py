"""docs/configuration.md is exactly what the settings classes render, and every variable is described."""

from __future__ import annotations

import os

import pytest

from keyway_cli.config_reference import DOC, SERVICES, render, undocumented


def test_the_checked_in_reference_matches_the_settings_classes() -> None:
    assert DOC.read_text() == render(), "run: uv run python -m keyway_cli.config_reference write"


def test_every_variable_has_a_description() -> None:
    assert undocumented() == []


def different(default: object) -> str | None:
    """A value other than ``default`` that the field accepts, or None for types not probed here."""
    if isinstance(default, bool):
        return "false" if default else "true"
    if isinstance(default, int):
        return str(default // 2 or 1)
    if isinstance(default, float):
        return str(default / 2 if default else 1.0)
    return None


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_section_lists_what_the_class_reads(service: str) -> None:
    """A variable set in the environment changes the setting the reference names for it."""
    section = render().split(f"## {service}\n", 1)[1].split("\n## ", 1)[0]
    names = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    assert names, service
    module, cls_name = SERVICES[service].split(":")
    cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
    for name in names:
        field = next(f for f, info in cls.model_fields.items() if name in str(info.validation_alias))
        default = cls().model_dump()[field]
        # A value that differs from the default and parses for the field's type.
        probe = different(default)
        if probe is None:
            continue
        old = os.environ.get(name)
        os.environ[name] = probe
        try:
            assert cls().model_dump()[field] != default, name
        finally:
            if old is None:
                del os.environ[name]
            else:
                os.environ[name] = old

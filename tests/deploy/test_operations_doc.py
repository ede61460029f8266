"""docs/operations.md names every metric the services export, and no metric that does not exist."""

from __future__ import annotations

import re

import pytest

from .support import ROOT

pytestmark = pytest.mark.deploy

DEFINITION = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"(keyway_[a-z0-9_]+)\"")


def defined_metrics() -> set[str]:
    names: set[str] = set()
    for base in (ROOT / "services", ROOT / "shared"):
        for path in base.rglob("*.py"):
            if "tests" not in path.parts:
                names.update(DEFINITION.findall(path.read_text()))
    return names


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    defined = defined_metrics()
    assert len(defined) >= 10, defined  # the search itself works
    documented = set(re.findall(r"`(keyway_[a-z0-9_]+)`", (ROOT / "docs" / "operations.md").read_text()))
    assert defined - documented == set(), "add these to docs/operations.md with what an alert on them means"
    assert documented - defined == set(), "docs/operations.md names metrics the code does not define"

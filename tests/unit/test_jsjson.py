"""``js_stringify`` against the real thing: node's ``JSON.stringify`` on the same values."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from keyway_shared.jsjson import js_stringify

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Node reads every case from stdin, parses it and prints JSON.stringify of each.
_NODE_SCRIPT = """
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const cases = JSON.parse(input);
  process.stdout.write(JSON.stringify(cases.map((value) => JSON.stringify(value))));
});
"""

CORPUS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    42,
    2**53 - 1,
    -(2**53 - 1),
    1.0,
    -1.0,
    1.5,
    -0.0,
    0.1,
    0.1 + 0.2,
    100.0,
    1e15,
    1e16,
    2.0**53,
    1.2345678901234568e20,
    1e21,
    1.5e300,
    1.7976931348623157e308,
    1e-6,
    1.5e-6,
    1e-7,
    1.234e-7,
    0.00001,
    0.000123,
    5e-324,
    -3.25e-10,
    "",
    "plain",
    "ünïcødé café",
    "日本語のテキスト",
    "emoji 😀 and 🇫🇷 flags",
    'quotes " and \\ backslash',
    "control \n \r \t \b \f \x00 \x1f \x7f chars",
    "separators \u2028 \u2029",
    "lone surrogate \ud800 here",
    "</script><script>alert(1)</script>",
    [],
    {},
    [1, "two", None, True, 3.5, [], {}],
    {"b": 1, "a": 2, "c": {"z": [1, 2, {"y": None}], "x": False}},
    {"b": 1, "2": "two", "a": 3, "1": "one", "10": "ten", "01": "leading zero", "-1": "negative"},
    {"4294967294": "largest index", "4294967295": "not an index", "0": "zero", "x": "x"},
    {"1.5": "not an index", "3": 3, "": "empty key"},
    {
        "from": "keyway",
        "type": "auth",
        "connectionId": "user-ü",
        "authMode": "OAUTH2",
        "providerConfigKey": "github-dev",
        "provider": "github",
        "environment": "dev",
        "success": True,
        "operation": "creation",
        "endUser": {"endUserId": "42", "organizationId": None},
        "metrics": {"ratio": 1.0, "p99_ms": 12.25},
    },
    [[[[["deep"]]]], {"n": {"n": {"n": {"n": 1.0}}}}],
]


def _node_stringify(values: list[Any]) -> list[str]:
    assert NODE is not None
    out = subprocess.run(
        [NODE, "-e", _NODE_SCRIPT],
        input=json.dumps(values, ensure_ascii=True, allow_nan=False),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: list[str] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def node_output() -> list[str]:
    return _node_stringify(CORPUS)


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=lambda i: repr(CORPUS[i])[:40])
def test_matches_node(node_output: list[str], index: int) -> None:
    assert js_stringify(CORPUS[index]) == node_output[index]


def test_whole_corpus_as_one_document(node_output: list[str]) -> None:
    # Key order of a nested document, and everything combined, as one body.
    assert js_stringify(CORPUS) == _node_stringify([CORPUS])[0]


def test_non_finite_numbers_become_null() -> None:
    assert js_stringify([float("nan"), float("inf"), float("-inf")]) == "[null,null,null]"


def test_tuples_are_arrays_and_non_json_is_refused() -> None:
    assert js_stringify((1, "a")) == '[1,"a"]'
    with pytest.raises(TypeError):
        js_stringify({"when": object()})

"""Reading a provider catalog's YAML file (an operator's, or the built-in sources when
``builtin.json`` is generated). Imported on first use only: see ``catalog._read_yaml``."""

from __future__ import annotations

from typing import Any

import yaml

from .errors import CatalogError

__all__ = ["read_yaml"]

# libyaml's safe loader reads the catalog about six times faster than the pure-Python one (30 ms
# against 175 ms here), paid at every service start and every test gateway; same result either way.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(_SAFE_LOADER):  # type: ignore[valid-type,misc] # a class chosen at import time
    """The safe loader, refusing a mapping that names one key twice (PyYAML keeps the last one
    silently: two providers of one name in one file would lose the first without a word). Parsing
    stays libyaml's; only mapping construction, already Python's, looks at each key once more."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # ``<<:`` merges may repeat what they merge; YAML says the mapping's own key wins
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: the base class says what is wrong with it
            if first != line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first at line {first})", key_node.start_mark
                )
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


def read_yaml(text: str, origin: str) -> dict[str, Any]:
    """The mapping of provider name to entry ``text`` holds; ``origin`` names it in errors."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a safe loader (libyaml's when present)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None)
        if isinstance(problem, str) and problem.startswith("duplicate key"):
            raise CatalogError(f"{origin}: {problem}") from None
        raise CatalogError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{origin}: the top level must be a mapping of provider name to template")
    return data

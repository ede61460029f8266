"""The provider catalog: the built-in ``providers.yaml`` plus optional operator files over it.

Loading is strict: a bad entry stops the load with one line naming the file, the provider and the
field (``provider 'acme' field proxy.retry.at: ...``), so a gateway never starts on a catalog that
means something else than its author wrote. :func:`check_files` reads the same files without
loading anything and reports every entry (``keyway providers check``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..auth_modes import AuthMode
from ..logging import get_logger
from .template import ProviderTemplate

__all__ = [
    "NANGO_ONLY_MODES",
    "TOKEN_HOOK_NAMES",
    "CatalogCheck",
    "CatalogError",
    "EntryProblem",
    "ProviderCatalog",
    "check_entries",
    "check_files",
    "load_catalog",
]

log = get_logger(__name__)

# Nango's auth modes that Keyway has no flow for yet (Nango's scripts/validation/providers/schema.json
# lists them beside Keyway's). An entry of one of these is skipped with a warning, not refused: an
# operator pointing KEYWAY_PROVIDERS_FILE at Nango's whole providers.yaml (a real use: "give me
# everything Nango has", from a later Nango than the one Keyway follows) must get the entries Keyway
# can connect, not a gateway that will not start because of a few it cannot (every entry of Nango
# 0.71.10's catalog is of a mode Keyway connects). Nothing is lost by skipping: no connection of such a provider
# could be made anyway, and the warning (and `keyway providers check`) names each one. A mode that
# neither Keyway nor Nango knows is a typo, and refused like any other bad field.
NANGO_ONLY_MODES: frozenset[str] = frozenset(
    {
        "TABLEAU",
    }
)


# The token hooks Keyway has (keyway_shared.credentials.token_hooks, which checks at import that its
# registry is exactly this list). Named here so that a catalog naming another is refused at load,
# without the providers package importing the credentials package (which imports this one).
TOKEN_HOOK_NAMES: frozenset[str] = frozenset(
    {"instagram", "salesforce", "slack", "stripe-app", "threads", "tiktok-ads"}
)


class CatalogError(ValueError):
    """The catalog file could not be read or an entry is invalid."""


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


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
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


@dataclass(frozen=True)
class EntryProblem:
    """Why one entry cannot be loaded, in one line: the file, the provider, the field."""

    origin: str
    provider: str
    field: str  # a dotted path in the entry ("proxy.retry.at"), "" for the entry as a whole
    message: str

    def __str__(self) -> str:
        where = f" field {self.field}" if self.field else ""
        return f"{self.origin}: provider {self.provider!r}{where}: {self.message}"


@dataclass
class CatalogCheck:
    """What a set of entries holds: the loadable templates, the skipped ones, the bad ones."""

    templates: dict[str, ProviderTemplate] = field(default_factory=dict)
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)  # provider -> its auth mode
    problems: list[EntryProblem] = field(default_factory=list)

    def loaded_by_mode(self) -> Counter[AuthMode]:
        return Counter(template.auth_mode for template in self.templates.values())

    def raise_first(self) -> None:
        """Refuse the catalog when an entry is bad, naming the first (and how many more there are)."""
        if self.problems:
            more = len(self.problems) - 1
            extra = f" (and {more} more bad entr{'y' if more == 1 else 'ies'})" if more else ""
            raise CatalogError(f"{self.problems[0]}{extra}")


def _field_path(location: Iterable[int | str]) -> str:
    return ".".join(str(part) for part in location)


def _problems_of(exc: ValidationError, origin: str, name: str) -> list[EntryProblem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(EntryProblem(origin, name, _field_path(error["loc"]), message))
    return problems


def _resolve(
    raw: Mapping[str, Any], origins: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]], list[EntryProblem]]:
    """An ``alias`` entry is the aliased entry shallow-merged with its own keys (Nango's rule)."""
    resolved: dict[str, dict[str, Any]] = {}
    problems: dict[str, EntryProblem] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> dict[str, Any] | None:
        if name in resolved or name in problems:
            return resolved.get(name)
        entry = raw.get(name)
        origin = origins.get(name, "?")
        if not isinstance(entry, dict):
            problems[name] = EntryProblem(origin, name, "", "is not a mapping")
            return None
        alias = entry.get("alias")
        if alias:
            if alias in seen or alias == name:
                problems[name] = EntryProblem(origin, name, "alias", f"alias cycle through {alias!r}")
                return None
            if alias not in raw:
                problems[name] = EntryProblem(origin, name, "alias", f"aliases unknown provider {alias!r}")
                return None
            base = resolve(alias, (*seen, name))
            if base is None:
                problems[name] = EntryProblem(origin, name, "alias", f"aliases provider {alias!r}, which is bad")
                return None
            merged = {**base, **entry}
        else:
            merged = dict(entry)
        resolved[name] = merged
        return merged

    for name in raw:
        resolve(name, ())
    return resolved, list(problems.values())


def check_entries(
    raw: Mapping[str, Any], origins: Mapping[str, str], *, only: Iterable[str] | None = None
) -> CatalogCheck:
    """Every entry of ``raw`` (or those named in ``only``) resolved and validated; ``origins`` says
    which file each came from, for the messages."""
    wanted = set(raw if only is None else only)
    resolved, alias_problems = _resolve(raw, origins)
    check = CatalogCheck(problems=[p for p in alias_problems if p.provider in wanted])
    for name, entry in resolved.items():
        if name not in wanted:
            continue
        mode = entry.get("auth_mode")
        if isinstance(mode, str) and mode in NANGO_ONLY_MODES:
            check.unsupported[name] = mode
            continue
        try:
            template = ProviderTemplate.model_validate(entry)
        except ValidationError as exc:
            check.problems.extend(_problems_of(exc, origins.get(name, "?"), name))
            continue
        if template.token_hook is not None and template.token_hook not in TOKEN_HOOK_NAMES:
            known = ", ".join(sorted(TOKEN_HOOK_NAMES))
            message = f"names no token hook Keyway has ({template.token_hook!r}; known: {known})"
            check.problems.append(EntryProblem(origins.get(name, "?"), name, "token_hook", message))
            continue
        check.templates[name] = template
        check.resolved[name] = entry
    return check


class ProviderCatalog:
    """The loaded templates by name. Every entry was validated when the catalog was loaded; the
    models of those a process never asks for are not kept (about 2 MB for the built-in catalog, in
    every gateway and refresher): one is built again from its checked entry on first use, then kept."""

    def __init__(self, templates: dict[str, ProviderTemplate], raw: dict[str, dict[str, Any]]) -> None:
        if not set(templates) <= set(raw):
            raise ValueError("every template needs its entry")
        self._templates = templates
        self._raw = raw

    @classmethod
    def checked(cls, entries: dict[str, dict[str, Any]]) -> ProviderCatalog:
        """A catalog of entries :func:`check_entries` found loadable, their models built on demand."""
        return cls({}, entries)

    def get(self, name: str) -> ProviderTemplate | None:
        template = self._templates.get(name)
        if template is None:
            entry = self._raw.get(name)
            if entry is not None:
                template = self._templates[name] = ProviderTemplate.model_validate(entry)
        return template

    def raw(self, name: str) -> dict[str, Any] | None:
        """The resolved YAML entry, as ``GET /provider/{name}`` returns it."""
        return self._raw.get(name)

    def names(self) -> list[str]:
        return sorted(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw


def _parse_builtin() -> tuple[dict[str, Any], dict[str, str]]:
    """``providers.yaml`` plus every ``providers.d/*.yaml`` (one file per family of providers), and
    the file each entry comes from."""
    package = resources.files("keyway_shared.providers")
    origin = "built-in providers.yaml"
    raw = _read_yaml(package.joinpath("providers.yaml").read_text(encoding="utf-8"), origin)
    origins = dict.fromkeys(raw, origin)
    directory = package.joinpath("providers.d")
    if directory.is_dir():
        for entry in sorted(directory.iterdir(), key=lambda item: item.name):
            if entry.name.endswith(".yaml"):
                origin = f"providers.d/{entry.name}"
                more = _read_yaml(entry.read_text(encoding="utf-8"), origin)
                duplicated = sorted(set(raw) & set(more))
                if duplicated:
                    raise CatalogError(f"{origin} redefines {', '.join(duplicated)}")
                raw.update(more)
                origins.update(dict.fromkeys(more, origin))
    return raw, origins


@cache
def _builtin_as_json() -> tuple[str | None, dict[str, str]]:
    """The built-in entries as JSON text, read once per process: parsing ~950 entries of YAML costs
    a few hundred milliseconds, decoding the same as JSON about twenty, and a process loads the
    catalog more than once (each service, each test gateway). None when JSON cannot carry them
    exactly (the catalog holds only strings, numbers, booleans, lists and mappings, so never yet)."""
    raw, origins = _parse_builtin()
    text = json.dumps(raw)
    return (text if json.loads(text) == raw else None), origins


def _builtin_entries() -> tuple[dict[str, Any], dict[str, str]]:
    """The built-in entries and the file each comes from, fresh objects every call (a caller may
    change what it gets without changing what the next one gets)."""
    text, origins = _builtin_as_json()
    if text is None:
        return _parse_builtin()
    return json.loads(text), dict(origins)


def _operator_entries(paths: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in paths:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"{name}: {exc.strerror}") from exc
        entries = _read_yaml(text, name)
        raw.update(entries)  # later files win
        origins.update(dict.fromkeys(entries, name))
    return raw, origins


def _split_paths(extra_file: str | None) -> list[str]:
    return [part.strip() for part in (extra_file or "").split(",") if part.strip()]


def check_files(paths: Iterable[str]) -> CatalogCheck:
    """The entries of ``paths`` (operator files, later ones winning) checked over the built-in
    catalog, as :func:`load_catalog` would read them; nothing is refused, everything is reported.
    A file that cannot be read or parsed is still a CatalogError."""
    raw, origins = _builtin_entries()
    extra, extra_origins = _operator_entries(paths)
    return check_entries({**raw, **extra}, {**origins, **extra_origins}, only=extra)


def load_catalog(extra_file: str | None = None) -> ProviderCatalog:
    """The built-in catalog with ``extra_file`` over it: one path, or several separated by commas
    (later files win), e.g. a team's shared templates and then a deployment's own."""
    raw, origins = _builtin_entries()
    extra, extra_origins = _operator_entries(_split_paths(extra_file))
    check = check_entries({**raw, **extra}, {**origins, **extra_origins})
    check.raise_first()
    if check.unsupported:
        log.warning(
            "providers skipped: auth mode not supported yet",
            count=len(check.unsupported),
            modes=dict(Counter(check.unsupported.values())),
            providers=sorted(check.unsupported),
        )
    return ProviderCatalog.checked(check.resolved)

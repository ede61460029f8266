"""The provider catalog: the built-in ``providers.yaml`` plus optional operator files over it.

The built-in entries (``providers.yaml`` and ``providers.d/*.yaml``) reach a service as
``builtin.json``, generated from them by ``make providers-json`` (see :data:`BUILTIN_JSON`).

Loading is strict: a bad entry stops the load with one line naming the file, the provider and the
field (``provider 'acme' field proxy.retry.at: ...``), so a gateway never starts on a catalog that
means something else than its author wrote. :func:`check_files` reads the same files without
loading anything and reports every entry (``keyway providers check``).
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..auth_modes import AuthMode
from ..logging import get_logger
from .errors import CatalogError
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


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    # PyYAML (and libyaml's extension) is imported only when a YAML file is read: a service reads
    # the built-in catalog from builtin.json, and YAML only when an operator's file is configured.
    # It costs about 1.7 MB of resident memory in a process that never parses YAML.
    from .yaml_files import read_yaml

    return read_yaml(text, origin)


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
    """The loaded templates by name. Every entry was validated before a process sees it (an
    operator's at load, the built-in ones when ``builtin.json`` was generated: see
    :func:`_builtin_index`). The models of those a process never asks for are not kept (about 2 MB
    for the built-in catalog, in every gateway and refresher): one is built again from its checked
    entry on first use, then kept. Built-in entries stay compressed JSON until asked for (~0.3 MB
    resident with their index, against ~3.5 MB as dicts), decoded afresh at each :meth:`raw`."""

    def __init__(
        self,
        templates: dict[str, ProviderTemplate],
        raw: dict[str, dict[str, Any]],
        *,
        builtin: _BuiltinIndex | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        if not set(templates) <= set(raw):
            raise ValueError("every template needs its entry")
        self._templates = templates
        self._raw = raw  # checked entries replacing (or beside) the built-in ones
        self._builtin = builtin
        self._hidden = frozenset(hidden)  # built-in names an operator's file turned into skipped entries

    @classmethod
    def checked(
        cls, entries: dict[str, dict[str, Any]], *, builtin: _BuiltinIndex | None = None, hidden: Iterable[str] = ()
    ) -> ProviderCatalog:
        """A catalog of entries :func:`check_entries` found loadable (over the built-in ones, when
        given), their models built on demand."""
        return cls({}, entries, builtin=builtin, hidden=hidden)

    def get(self, name: str) -> ProviderTemplate | None:
        template = self._templates.get(name)
        if template is None:
            entry = self.raw(name)
            if entry is not None:
                template = self._templates[name] = ProviderTemplate.model_validate(entry)
        return template

    def raw(self, name: str) -> dict[str, Any] | None:
        """The resolved YAML entry, as ``GET /provider/{name}`` returns it (a built-in one decoded
        afresh at each call)."""
        entry = self._raw.get(name)
        if entry is None and self._builtin is not None and name not in self._hidden:
            entry = self._builtin.resolved(name)
        return entry

    def _names(self) -> set[str]:
        names = set(self._raw)
        if self._builtin is not None:
            names.update(self._builtin.order.keys() - self._hidden)
        return names

    def names(self) -> list[str]:
        return sorted(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        if name in self._raw:
            return True
        return self._builtin is not None and name in self._builtin.order and name not in self._hidden


def _parse_builtin() -> tuple[dict[str, Any], dict[str, str]]:
    """``providers.yaml`` plus every ``providers.d/*.yaml`` (one file per family of providers), and
    the file each entry comes from. Only ``make providers-json`` and the tests read these: a service
    reads ``builtin.json``, generated from them."""
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


# The built-in catalog as services read it: the YAML files' entries as JSON, generated by
# ``make providers-json`` (``python -m keyway_shared.providers.builtin_json write``) and committed.
# Parsing the YAML at every start cost each gateway and refresher ~8 MB of resident memory (the
# parsed dicts, and the parser's garbage that the allocator keeps); this file is read line by line,
# each entry kept as its JSON text (compressed, see _BLOCK) and decoded when asked for.
# tests/unit/test_builtin_catalog_json.py fails when it is not exactly what the YAML files generate
# (naming the command that regenerates it), and checks every entry the way a load would.
BUILTIN_JSON = "builtin.json"
REGENERATE_BUILTIN_JSON = "make providers-json"
_ENTRY_PREFIX = '  "'  # a provider's line; an origin's line starts with the quote itself
_JSON = json.JSONDecoder()


def render_builtin_json(raw: Mapping[str, Any], origins: Mapping[str, str]) -> str:
    """``builtin.json``'s text: a JSON object of origin (the file's name in messages) to that file's
    entries, one provider a line (compact, ASCII, so no entry spans lines) in the files' order."""
    by_origin: dict[str, list[str]] = {}
    for name, entry in raw.items():
        line = f"{_ENTRY_PREFIX}{json.dumps(name)[1:]}: {json.dumps(entry, separators=(',', ':'))}"
        by_origin.setdefault(origins[name], []).append(line)
    blocks = [f"{json.dumps(origin)}: {{\n" + ",\n".join(lines) + "\n}" for origin, lines in by_origin.items()]
    return "{\n" + ",\n".join(blocks) + "\n}\n"


# Entries are kept zlib-compressed in blocks of this many (their JSON lines joined by newlines): a
# block compresses about five times (the entries of one family repeat each other's keys and URLs),
# one entry costs a block's decompression (~10 KB, some microseconds), and only those a process asks
# for are ever decoded. The built-in catalog's ~0.7 MB of JSON text costs ~0.15 MB resident so.
_BLOCK = 16


@dataclass(frozen=True)
class _BuiltinIndex:
    """The built-in entries as compressed JSON text, decoded when asked for."""

    order: dict[str, int]  # provider -> its place in the file (block order // _BLOCK, line order % _BLOCK)
    blocks: list[bytes]  # each _BLOCK entries' JSON lines, newline-joined and zlib-compressed
    origins: dict[str, str]  # provider -> the file it comes from, for messages
    aliases: dict[str, str]  # provider -> the provider it aliases

    def entry(self, name: str) -> dict[str, Any] | None:
        """The entry as its YAML file wrote it (an alias not resolved), a fresh dict."""
        place = self.order.get(name)
        if place is None:
            return None
        block, line = divmod(place, _BLOCK)
        entry: dict[str, Any] = json.loads(zlib.decompress(self.blocks[block]).split(b"\n")[line])
        return entry

    def resolved(self, name: str) -> dict[str, Any] | None:
        """The entry with its alias resolved as :func:`_resolve` does (the built-in catalog has no
        cycle and no unknown alias: the build-time test checks it)."""
        entry = self.entry(name)
        alias = self.aliases.get(name)
        if entry is None or alias is None:
            return entry
        base = self.resolved(alias)
        return entry if base is None else {**base, **entry}

    def entries(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Every entry decoded, and the file each comes from (fresh objects)."""
        lines = [line for block in self.blocks for line in zlib.decompress(block).split(b"\n")]
        return {name: json.loads(lines[place]) for name, place in self.order.items()}, dict(self.origins)

    def affected_by(self, extra: Mapping[str, Any]) -> set[str]:
        """The names whose resolved entries an operator's ``extra`` entries decide: their own, and
        every built-in one whose alias chain reaches one of them."""
        affected = set(extra)
        for name in self.aliases:
            seen = {name}
            current = name
            while current not in extra and current in self.aliases:
                current = self.aliases[current]
                if current in seen:
                    break
                seen.add(current)
            if current in extra:
                affected.add(name)
        return affected

    def closure(
        self, names: Iterable[str], extra: Mapping[str, Any], extra_origins: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The entries (``extra``'s over the built-in ones) of ``names`` and of every provider their
        aliases reach, in the order a merge of the whole catalog would hold them, with their files:
        all :func:`check_entries` needs to check ``names`` exactly as over the whole catalog."""
        needed: set[str] = set()
        for name in names:
            current: object = name
            while isinstance(current, str) and current not in needed:
                entry = extra[current] if current in extra else self.entry(current)
                if entry is None:
                    break  # an unknown alias: _resolve names it
                needed.add(current)
                current = entry.get("alias") if isinstance(entry, dict) else None
        order = [name for name in self.order if name in needed]
        order += [name for name in extra if name in needed and name not in self.order]
        raw = {name: extra[name] if name in extra else self.entry(name) for name in order}
        origins = {name: extra_origins[name] if name in extra else self.origins[name] for name in order}
        return raw, origins


@cache
def _builtin_index() -> _BuiltinIndex:
    """``builtin.json`` read once per process. Its entries are not validated here: the build-time
    test checks every one of them as :func:`check_entries` would (an operator's file is still
    checked at every load, with every built-in entry it changes)."""
    order: dict[str, int] = {}
    blocks: list[bytes] = []
    pending: list[bytes] = []
    origins: dict[str, str] = {}
    aliases: dict[str, str] = {}
    origin: str | None = None
    path = resources.files("keyway_shared.providers").joinpath(BUILTIN_JSON)
    try:
        with path.open("r", encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(_ENTRY_PREFIX) and origin is not None:
                    name, end = _JSON.raw_decode(line, len(_ENTRY_PREFIX) - 1)
                    text = line[end + 2 :].rstrip().removesuffix(",")
                    order[name] = len(order)
                    origins[name] = origin
                    pending.append(text.encode())  # ASCII: the file is written with ensure_ascii
                    if len(pending) == _BLOCK:
                        blocks.append(zlib.compress(b"\n".join(pending)))
                        pending.clear()
                    if '"alias":' in text:
                        alias = json.loads(text).get("alias")
                        if isinstance(alias, str):
                            aliases[name] = alias
                elif line.startswith('"'):
                    origin, _end = _JSON.raw_decode(line)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"built-in {BUILTIN_JSON}: {exc}; run `{REGENERATE_BUILTIN_JSON}`") from exc
    if pending:
        blocks.append(zlib.compress(b"\n".join(pending)))
    return _BuiltinIndex(order, blocks, origins, aliases)


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
    builtin = _builtin_index()
    extra, extra_origins = _operator_entries(paths)
    raw, origins = builtin.closure(extra, extra, extra_origins)
    return check_entries(raw, origins, only=extra)


def load_catalog(extra_file: str | None = None) -> ProviderCatalog:
    """The built-in catalog with ``extra_file`` over it: one path, or several separated by commas
    (later files win), e.g. a team's shared templates and then a deployment's own.

    Only what the operator's files decide is checked here (their entries, and the built-in ones
    aliasing them), exactly as over the whole catalog; the rest was checked at build time."""
    builtin = _builtin_index()
    extra, extra_origins = _operator_entries(_split_paths(extra_file))
    affected = builtin.affected_by(extra)
    raw, origins = builtin.closure(affected, extra, extra_origins)
    check = check_entries(raw, origins, only=affected)
    check.raise_first()
    if check.unsupported:
        log.warning(
            "providers skipped: auth mode not supported yet",
            count=len(check.unsupported),
            modes=dict(Counter(check.unsupported.values())),
            providers=sorted(check.unsupported),
        )
    return ProviderCatalog.checked(check.resolved, builtin=builtin, hidden=affected - set(check.resolved))

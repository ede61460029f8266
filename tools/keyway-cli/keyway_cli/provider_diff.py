"""Keyway's provider catalog beside a Nango ``providers.yaml``: what differs, provider by provider.

Only providers present in both are compared, each with its aliases resolved the way both catalogs
resolve them (the aliased entry shallow-merged with the entry's own keys), on the fields that decide
how a connection is made and where its requests go (:data:`FIELDS`). Defaults are filled on both
sides first (PKCE on, ``body`` authorization, form bodies, a space between scopes, the parameters
both send anyway: ``response_type=code``, ``grant_type``, and a refresh with the token parameters when
the entry names no refresh parameters), so an entry that spells a default out does not differ from
one that leaves it implicit.

One difference is Keyway's own and not reported: a name Keyway renamed to Nango's keeps working for
connections stored before the rename. Such a field is declared in ``connection_config`` with
``deprecated: true`` and is used only by a further ``A || B`` alternative; the comparison leaves out
those alternatives and fields when Nango does not use the name itself.

    keyway providers diff NANGO_FILE [--provider NAME]... [--kept FILE] [--providers-file FILE] [--json]

The exit status is 1 when something differs that ``--kept`` (``docs/provider-differences.yaml``) does
not list, or when it lists what no longer differs; else 0.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from keyway_shared.providers import CatalogError, ProviderCatalog, load_catalog

__all__ = [
    "FIELDS",
    "FieldDifference",
    "add_diff_parser",
    "compare",
    "diff_command",
    "kept_differences",
    "load_nango_catalog",
    "print_differences",
    "resolve_aliases",
    "run_diff",
    "unexplained",
]

# The compared fields, in the order a report lists them.
FIELDS = (
    "auth_mode",
    "authorization_url",
    "token_url",
    "refresh_url",
    "proxy.base_url",
    "proxy.headers",
    "authorization_params",
    "token_params",
    "refresh_params",
    "scope_separator",
    "disable_pkce",
    "authorization_method",
    "token_request_auth_method",
    "body_format",
    "token_response_metadata",
    "redirect_uri_metadata",
    "connection_config.variables",
    "connection_config.fields",
)
_URL_FIELDS = ("authorization_url", "token_url", "refresh_url", "proxy.base_url")
_DEFAULTS: dict[str, Any] = {
    "scope_separator": " ",
    "disable_pkce": False,
    "authorization_method": "body",
    "body_format": "form",
}
# Grants whose parameters both fill the same way when the entry leaves them out.
_CODE_GRANT_MODES = {"OAUTH2", "CUSTOM", "MCP_OAUTH2", "MCP_OAUTH2_GENERIC"}
_CONNECTION_CONFIG = re.compile(r"\$\{connectionConfig\.([A-Za-z0-9_.-]+)\}")


@dataclass(frozen=True)
class FieldDifference:
    provider: str
    field: str
    keyway: Any
    nango: Any


def resolve_aliases(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every mapping entry of ``raw`` with its ``alias`` chain merged in (the alias's keys first)."""
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, seen: frozenset[str]) -> dict[str, Any]:
        if name not in resolved:
            entry = raw.get(name)
            entry = dict(entry) if isinstance(entry, dict) else {}
            alias = entry.pop("alias", None)
            if isinstance(alias, str) and alias in raw and alias not in seen:
                entry = {**resolve(alias, seen | {name}), **entry}
            resolved[name] = entry
        return resolved[name]

    for name, entry in raw.items():
        if isinstance(entry, dict):
            resolve(name, frozenset())
    return resolved


def load_nango_catalog(path: str | Path) -> dict[str, dict[str, Any]]:
    """A Nango ``providers.yaml``, aliases resolved."""
    data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level is not a mapping of provider name to template")
    return resolve_aliases(data)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _url(value: Any, *, base: bool = False) -> Any:
    """One URL, its ``||`` alternatives spaced one way (a proxy base URL without its trailing slash:
    the proxy joins it to the endpoint either way)."""
    if isinstance(value, dict):
        return {str(mode): _url(url, base=base) for mode, url in sorted(value.items())}
    if not value:
        return None
    parts = [part.strip() for part in str(value).split("||")]
    return " || ".join(part.rstrip("/") if base else part for part in parts)


def _params(value: Any) -> dict[str, str]:
    return {str(k): _text(v) for k, v in sorted(value.items())} if isinstance(value, dict) else {}


def _variables(text: Any) -> set[str]:
    if isinstance(text, dict):
        return set().union(*(_variables(v) for v in text.values())) if text else set()
    return set(_CONNECTION_CONFIG.findall(text)) if isinstance(text, str) else set()


def _normalise(entry: Mapping[str, Any]) -> dict[str, Any]:
    proxy = entry.get("proxy") if isinstance(entry.get("proxy"), dict) else {}
    assert isinstance(proxy, dict)
    headers = proxy.get("headers") if isinstance(proxy.get("headers"), dict) else {}
    assert isinstance(headers, dict)
    config = entry.get("connection_config") if isinstance(entry.get("connection_config"), dict) else {}
    assert isinstance(config, dict)
    out: dict[str, Any] = {
        "auth_mode": entry.get("auth_mode"),
        "authorization_url": _url(entry.get("authorization_url")),
        "token_url": _url(entry.get("token_url")),
        "refresh_url": _url(entry.get("refresh_url")),
        "proxy.base_url": _url(proxy.get("base_url"), base=True),
        "proxy.headers": {str(k).lower(): _text(v) for k, v in sorted(headers.items())},
        "authorization_params": _params(entry.get("authorization_params")),
        "token_params": _params(entry.get("token_params")),
        "refresh_params": _params(entry.get("refresh_params")),
        "token_response_metadata": sorted(map(str, entry.get("token_response_metadata") or [])),
        "redirect_uri_metadata": sorted(map(str, entry.get("redirect_uri_metadata") or [])),
        "connection_config.fields": sorted(map(str, config)),
    }
    _grant_defaults(out, entry.get("auth_mode"))
    separator = entry.get("scope_separator", entry.get("scope_seprator"))
    for field, default in _DEFAULTS.items():
        value = separator if field == "scope_separator" else entry.get(field)
        out[field] = default if value is None else value
    out["token_request_auth_method"] = entry.get("token_request_auth_method")
    used = [out[f] for f in _URL_FIELDS] + list(out["proxy.headers"].values())
    used += [*out["authorization_params"].values(), *out["token_params"].values(), *out["refresh_params"].values()]
    out["connection_config.variables"] = sorted(set().union(*(_variables(u) for u in used)))
    return out


def _grant_defaults(out: dict[str, Any], mode: Any) -> None:
    """The parameters an authorization and its token requests carry whether or not the entry says so."""
    if mode in _CODE_GRANT_MODES:
        out["authorization_params"] = {"response_type": "code", **out["authorization_params"]}
        token = {"grant_type": "authorization_code", **out["token_params"]}
        refresh = out["refresh_params"] or {k: v for k, v in token.items() if k != "grant_type"}
        out["token_params"] = dict(sorted(token.items()))
        out["refresh_params"] = dict(sorted({**refresh, "grant_type": "refresh_token"}.items()))
        out["authorization_params"] = dict(sorted(out["authorization_params"].items()))
    elif mode == "OAUTH2_CC":
        out["token_params"] = dict(sorted({"grant_type": "client_credentials", **out["token_params"]}.items()))


def _deprecated(entry: Mapping[str, Any]) -> set[str]:
    config = entry.get("connection_config")
    if not isinstance(config, dict):
        return set()
    return {name for name, spec in config.items() if isinstance(spec, dict) and spec.get("deprecated") is True}


def _drop_legacy(value: Any, legacy: set[str]) -> Any:
    """``value`` without the ``||`` alternatives that exist only for a deprecated name."""
    if isinstance(value, dict):
        return {k: _drop_legacy(v, legacy) for k, v in value.items()}
    if not isinstance(value, str) or "||" not in value:
        return value
    kept = [part for part in value.split(" || ") if not (_variables(part) & legacy)]
    return " || ".join(kept) if kept else value


def _compare_entry(name: str, keyway: Mapping[str, Any], nango: Mapping[str, Any]) -> list[FieldDifference]:
    ours, theirs = _normalise(keyway), _normalise(nango)
    legacy = _deprecated(keyway) - set(theirs["connection_config.variables"]) - set(theirs["connection_config.fields"])
    if legacy:
        for field in (*_URL_FIELDS, "proxy.headers"):
            ours[field] = _drop_legacy(ours[field], legacy)
        ours["connection_config.fields"] = [f for f in ours["connection_config.fields"] if f not in legacy]
        ours["connection_config.variables"] = [v for v in ours["connection_config.variables"] if v not in legacy]
    return [
        FieldDifference(name, field, ours[field], theirs[field]) for field in FIELDS if ours[field] != theirs[field]
    ]


def compare(
    catalog: ProviderCatalog, nango: Mapping[str, Mapping[str, Any]], providers: Iterable[str] | None = None
) -> dict[str, list[FieldDifference]]:
    """The differing fields of every provider in both catalogs (or of ``providers``), by provider."""
    names = sorted(set(catalog.names()) & set(nango)) if providers is None else sorted(providers)
    differences: dict[str, list[FieldDifference]] = {}
    for name in names:
        keyway = catalog.raw(name)
        if keyway is None or name not in nango:
            continue
        found = _compare_entry(name, keyway, nango[name])
        if found:
            differences[name] = found
    return differences


def kept_differences(path: str | Path) -> dict[str, dict[str, str]]:
    """``docs/provider-differences.yaml``: provider → field → why Keyway keeps that difference."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level is not a mapping of provider to fields")
    kept: dict[str, dict[str, str]] = {}
    for provider, fields in data.items():
        if not isinstance(fields, dict) or not fields:
            raise ValueError(f"{path}: {provider}: give field: reason pairs")
        for field, reason in fields.items():
            if field not in FIELDS:
                raise ValueError(f"{path}: {provider}: {field!r} is not a compared field ({', '.join(FIELDS)})")
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"{path}: {provider}.{field}: say why the difference is kept")
        kept[str(provider)] = {str(field): str(reason) for field, reason in fields.items()}
    return kept


def unexplained(
    differences: Mapping[str, list[FieldDifference]], kept: Mapping[str, Mapping[str, str]]
) -> tuple[list[FieldDifference], list[tuple[str, str]]]:
    """Differences the kept list does not name, and kept entries that no longer differ."""
    found = {(d.provider, d.field) for diffs in differences.values() for d in diffs}
    new = [d for diffs in differences.values() for d in diffs if d.field not in kept.get(d.provider, {})]
    gone = sorted((p, f) for p, fields in kept.items() for f in fields if (p, f) not in found)
    return new, gone


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else repr(value)


def print_differences(
    differences: Mapping[str, list[FieldDifference]], out: TextIO, kept: Mapping[str, Mapping[str, str]] | None = None
) -> None:
    for provider, diffs in differences.items():
        print(f"{provider}:", file=out)
        for diff in diffs:
            reason = (kept or {}).get(provider, {}).get(diff.field)
            mark = f"  (kept: {reason})" if reason else ""
            print(f"  {diff.field}:{mark}", file=out)
            print(f"    keyway: {_show(diff.keyway)}", file=out)
            print(f"    nango:  {_show(diff.nango)}", file=out)


def run_diff(
    catalog: ProviderCatalog,
    nango_file: str | Path,
    out: TextIO,
    *,
    providers: Iterable[str] | None = None,
    kept_file: str | Path | None = None,
    as_json: bool = False,
) -> int:
    """``keyway providers diff``: 0 when nothing differs (or all of it is kept on purpose), else 1."""
    differences = compare(catalog, load_nango_catalog(nango_file), list(providers) if providers else None)
    kept = kept_differences(kept_file) if kept_file else {}
    new, gone = unexplained(differences, kept)
    if as_json:
        report = {p: {d.field: {"keyway": d.keyway, "nango": d.nango} for d in ds} for p, ds in differences.items()}
        print(json.dumps({"differences": report, "gone": [f"{p}.{f}" for p, f in gone]}, indent=2), file=out)
    else:
        print_differences(differences, out, kept)
        for provider, field in gone if kept_file else ():
            print(f"{provider}.{field}: listed as kept but no longer differs", file=out)
        count = sum(len(d) for d in differences.values())
        print(f"{len(differences)} providers differ ({count} fields, {len(new)} not listed as kept)", file=out)
    return 1 if new or gone else 0


def add_diff_parser(providers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    diff = providers.add_parser("diff", help="compare the provider catalog with a Nango providers.yaml")
    diff.add_argument("nango_file", metavar="NANGO_FILE", help="Nango's providers.yaml (@nangohq/providers)")
    diff.add_argument("--provider", action="append", default=[], help="only this provider (repeatable)")
    diff.add_argument("--kept", metavar="FILE", help="the differences kept on purpose (docs/provider-differences.yaml)")
    diff.add_argument("--providers-file", metavar="FILE", help="operator files over the built-in catalog")
    diff.add_argument("--json", action="store_true", help="machine-readable output")


def diff_command(args: argparse.Namespace, *, out: TextIO) -> int:
    try:
        catalog = load_catalog(args.providers_file)
        return run_diff(catalog, args.nango_file, out, providers=args.provider, kept_file=args.kept, as_json=args.json)
    except (CatalogError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=out)
        return 2

"""Nango's catalog entries as Keyway catalog entries: a first draft to check, not a copy to trust.

``keyway providers import-nango NANGO_FILE`` takes every entry of a Nango ``providers.yaml`` that the
built-in catalog lacks and whose auth mode Keyway connects, and applies the rules Keyway's catalog
keeps for every entry (docs/provider-differences.yaml says why for each):

- a User-Agent naming Nango names Keyway;
- no fixed ``Content-Type``, and no generic ``Accept``, among the proxy's headers: a template header
  replaces the app's own, so uploads and form posts would go out labelled JSON (a vendor media type,
  ``application/vnd.x+json``, is what the API asks for and stays);
- OAuth URLs carry no query string (only origin and path are used): a fixed parameter moves to the
  request's parameters;
- a verification call is a path, and only API-key and Basic connections are verified;
- only Nango's fields that Keyway reads: its server-side scripts (webhook routing, credential checks)
  and its own guides (and the form fields' anchors in them) are left out, and so is a
  post-connection script Keyway has no code for;
- ``docs`` is the provider's own API documentation when known (``--docs-links``), else Nango's page.

An entry Keyway could not connect as written is not drafted but reported, with the reason: an API
key sent where Keyway's proxy puts none (the request body, the URL path), a whole origin typed by a
person (Keyway fills a host, or an origin only from the provider's token response), a variable that
nothing fills, a missing OAuth URL.

    keyway providers import-nango NANGO_FILE [--provider NAME]... [--docs-links FILE] [--out DIR]

Without ``--out`` the drafts are printed; with it, each family's drafts go to ``DIR/<family>.yaml``
and the differences they carry from Nango's entries to ``DIR/differences.yaml`` (in the shape of
docs/provider-differences.yaml), for a person to read, fix and merge.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml

from keyway_shared.providers import CatalogError, interpolation_variables, load_catalog
from keyway_shared.providers.catalog import NANGO_ONLY_MODES
from keyway_shared.providers.enrichment.hooks import HOOKS, NO_OP

from .provider_diff import resolve_aliases

__all__ = [
    "Draft",
    "Refused",
    "add_import_parser",
    "draft_entries",
    "family_of",
    "import_command",
]

HEADERS_REASON = (
    "No fixed Content-Type or Accept: a template header overrides the app's own, so uploads (multipart)"
    " and form posts would go out labelled JSON; the app's Content-Type and Accept go through."
)
USER_AGENT_REASON = "The User-Agent falls back to 'Keyway', not to Nango's support address."
QUERY_REASON = (
    "Keyway's OAuth URLs carry no query string (only origin and path are used): the URL's fixed"
    " parameters go in the request's parameters instead."
)

# Nango's keys that Keyway's catalog does not carry: scripts that run on Nango's servers, and its guides.
_LEFT_OUT = frozenset(
    {
        "docs_connect",
        "setup_guide_url",
        "webhook_routing_script",
        "webhook_user_defined_secret",
        "webhook_allowed_query_params",
        "webhook_response_metadata",
        "credentials_verification_script",
        "pre_connection_deletion_script",
        "pre_connection_creation_script",
    }
)
# Nango's categories that say nothing of what a provider does.
_NOT_A_CATEGORY = frozenset({"popular"})
# Keyway's family files, by name prefix first (the big vendors keep one file each), then by category.
_FAMILY_PREFIXES = (
    ("google", "google"),
    ("microsoft", "microsoft"),
    ("azure", "microsoft"),
    ("zoho", "zoho"),
    ("jira", "atlassian"),
    ("confluence", "atlassian"),
    ("atlassian", "atlassian"),
    ("bitbucket", "atlassian"),
)
_FAMILY_OF_CATEGORY = {
    "accounting": "accounting",
    "invoicing": "accounting",
    "erp": "accounting",
    "analytics": "analytics",
    "ats": "ats",
    "cms": "cms",
    "search": "cms",
    "communication": "communication",
    "video": "communication",
    "crm": "crm",
    "dev-tools": "dev-tools",
    "e-commerce": "ecommerce",
    "hr": "hr",
    "payroll": "hr",
    "iam": "identity",
    "marketing": "marketing",
    "surveys": "marketing",
    "payment": "payments",
    "banking": "payments",
    "productivity": "productivity",
    "knowledge-base": "productivity",
    "design": "productivity",
    "legal": "productivity",
    "social": "social",
    "storage": "storage",
    "support": "support",
    "ticketing": "support",
    "ai": "ai",
}
_GENERIC_MEDIA = r"(\*/\*|application/json|text/event-stream)"
_GENERIC_ACCEPT = re.compile(rf"^\s*{_GENERIC_MEDIA}(\s*,\s*{_GENERIC_MEDIA})*\s*$", re.IGNORECASE)
_WHOLE_ORIGIN = re.compile(r"^\$\{connectionConfig\.([A-Za-z0-9_.-]+)\}")
_OAUTH_URLS = (("authorization_url", "authorization_params"), ("token_url", "token_params"))


@dataclass
class Draft:
    """One Keyway entry drafted from Nango's, the file it belongs in, and how it differs from Nango's."""

    name: str
    family: str
    entry: dict[str, Any]
    differences: dict[str, str] = field(default_factory=dict)  # compared field -> why
    notes: list[str] = field(default_factory=list)  # what the draft left out, for the comment above it


@dataclass(frozen=True)
class Refused:
    name: str
    reason: str


def family_of(name: str, categories: Iterable[str]) -> str:
    """The ``providers.d`` file an entry goes in: its vendor's, else its first known category's."""
    for prefix, family in _FAMILY_PREFIXES:
        if name == prefix or name.startswith(f"{prefix}-"):
            return family
    for category in categories:
        if category in _FAMILY_OF_CATEGORY:
            return _FAMILY_OF_CATEGORY[category]
    return "other"


def _drop_generic_headers(proxy: dict[str, Any]) -> list[str]:
    headers = proxy.get("headers")
    if not isinstance(headers, dict):
        return []
    dropped = []
    for name in list(headers):
        value = str(headers[name])
        lower = name.lower()
        if lower == "content-type" or (lower == "accept" and _GENERIC_ACCEPT.match(value)):
            dropped.append(name)
            del headers[name]
    if not headers:
        del proxy["headers"]
    return dropped


def _keyway_user_agent(headers: Any) -> bool:
    """A User-Agent naming Nango names Keyway instead (only its fallback when the app gives one)."""
    if not isinstance(headers, dict):
        return False
    changed = False
    for name, value in headers.items():
        if name.lower() == "user-agent" and "nango" in str(value).lower():
            kept = [part.strip() for part in str(value).split("||") if "nango" not in part.lower()]
            headers[name] = " || ".join([*kept, "Keyway"])
            changed = True
    return changed


def _fix_verification(proxy: dict[str, Any], mode: str, notes: list[str]) -> None:
    check = proxy.get("verification")
    if not isinstance(check, dict):
        return
    if mode not in {"API_KEY", "BASIC"}:
        del proxy["verification"]
        notes.append("no verification call: Keyway verifies API-key and Basic credentials only")
        return
    for key in ("endpoints", "endpoint"):
        value = check.get(key)
        if isinstance(value, list):
            check[key] = [path if str(path).startswith("/") else f"/{path}" for path in value]
        elif isinstance(value, str) and not value.startswith("/"):
            check[key] = f"/{value}"


def _move_query(entry: dict[str, Any], differences: dict[str, str]) -> str | None:
    """Fixed query parameters of the OAuth URLs moved to their parameters; a reason when it cannot be."""
    for url_field, params_field in _OAUTH_URLS:
        url = entry.get(url_field)
        if not isinstance(url, str) or "?" not in url:
            continue
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if any("${" in value for value in params.values()):
            return f"{url_field} carries a variable in its query string, which Keyway's OAuth URLs do not take"
        entry[url_field] = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        if url_field == "token_url" and entry.get("auth_mode") == "OAUTH2_CC":
            params.pop("grant_type", None)  # every client-credentials request sends it in the body
        differences[url_field] = QUERY_REASON
        if params:
            entry[params_field] = {**params, **(entry.get(params_field) or {})}
            differences[params_field] = QUERY_REASON
    return None


def _urls(entry: Mapping[str, Any]) -> list[str]:
    proxy = entry.get("proxy") if isinstance(entry.get("proxy"), dict) else {}
    assert isinstance(proxy, dict)
    found = [entry.get(key) for key in ("authorization_url", "request_url", "refresh_url", "revocation_url")]
    token = entry.get("token_url")
    found += list(token.values()) if isinstance(token, dict) else [token]
    found.append(proxy.get("base_url"))
    return [url for url in found if isinstance(url, str) and url]


def _why_not(entry: Mapping[str, Any]) -> str | None:
    """Why Keyway could not connect ``entry`` (aliases resolved) as written, or None."""
    mode = entry.get("auth_mode")
    proxy = entry.get("proxy") if isinstance(entry.get("proxy"), dict) else {}
    assert isinstance(proxy, dict)
    if not proxy.get("base_url"):
        return "no proxy base URL"
    if mode == "OAUTH2" and not (entry.get("authorization_url") and entry.get("token_url")):
        return "an OAuth 2 entry without an authorization or token URL (the code comes another way)"
    if mode == "OAUTH2_CC" and not entry.get("token_url"):
        return "a client-credentials entry without a token URL"
    if mode == "API_KEY":
        places = [*(proxy.get("headers") or {}).values(), *(proxy.get("query") or {}).values()]
        if not any("${apiKey}" in str(value) for value in places):
            return "the API key goes where Keyway's proxy puts none (the request body or the URL path)"
    metadata = set(entry.get("token_response_metadata") or [])
    for url in _urls(entry):
        if not url.startswith(("https://", "${")):
            return f"a URL that is not https ({url})"
        for part in url.split("||"):
            origin = _WHOLE_ORIGIN.match(part.strip())
            if origin and origin.group(1) not in metadata:
                return (
                    f"the origin is a whole URL typed by a person (${{connectionConfig.{origin.group(1)}}}); "
                    "Keyway fills an origin only from the provider's token response"
                )
    config = entry.get("connection_config") if isinstance(entry.get("connection_config"), dict) else {}
    assert isinstance(config, dict)
    filled_by_flow = metadata | set(entry.get("redirect_uri_metadata") or [])
    if entry.get("post_connection_script") in HOOKS or entry.get("post_connection"):
        return None  # Keyway's own code fills what it fills
    headers = [str(value) for value in (proxy.get("headers") or {}).values()]
    for text in [*_urls(entry), *headers]:
        unfilled = [_unfilled(part, config, filled_by_flow) for part in text.split("||")]
        if all(unfilled):
            return f"nothing fills ${{connectionConfig.{unfilled[-1]}}} (Keyway has no script of Nango's that would)"
    return None


def _unfilled(text: str, config: Mapping[str, Any], filled_by_flow: set[str]) -> str | None:
    """A variable of ``text`` that no person, token response or callback fills, if there is one."""
    for variable in sorted(interpolation_variables(text)):
        if variable in {"apiKey", "accessToken"} or variable.startswith("credentials.") or variable in filled_by_flow:
            continue
        spec = config.get(variable)
        if spec is None or (isinstance(spec, dict) and spec.get("automated")):
            return variable
    return None


def _declare_token_fields(entry: dict[str, Any], merged: Mapping[str, Any], differences: dict[str, str]) -> None:
    """Declare the token-response fields the URLs and headers use (Keyway's catalog declares every
    variable it uses; the person's form leaves ``automated`` ones out)."""
    proxy = merged.get("proxy") if isinstance(merged.get("proxy"), dict) else {}
    assert isinstance(proxy, dict)
    texts = [*_urls(merged), *(str(value) for value in (proxy.get("headers") or {}).values())]
    used = set().union(*(interpolation_variables(text) for text in texts)) if texts else set()
    config = merged.get("connection_config") if isinstance(merged.get("connection_config"), dict) else {}
    assert isinstance(config, dict)
    missing = sorted(name for name in used & set(merged.get("token_response_metadata") or []) if name not in config)
    if missing:
        entry["connection_config"] = {**config} | {
            name: {"type": "string", "title": name, "description": "Filled from the token response", "automated": True}
            for name in missing
        }
        differences["connection_config.fields"] = (
            f"{', '.join(missing)} declared: the token response fills it, and Keyway's catalog declares every"
            " variable its URLs and headers use."
        )


def _drop_doc_sections(entry: dict[str, Any]) -> None:
    """A form field's ``doc_section`` is an anchor in Nango's connect guide, which Keyway does not link."""
    for group in ("connection_config", "credentials"):
        fields = entry.get(group)
        if isinstance(fields, dict):
            for spec in fields.values():
                if isinstance(spec, dict):
                    spec.pop("doc_section", None)


def _draft(name: str, own: Mapping[str, Any], resolved: Mapping[str, Any], docs: str | None) -> Draft | Refused:
    entry = copy.deepcopy(dict(own))
    notes: list[str] = []
    differences: dict[str, str] = {}
    for key in _LEFT_OUT & set(entry):
        del entry[key]
    script = entry.get("post_connection_script")
    if script and script not in HOOKS and script not in NO_OP:
        del entry["post_connection_script"]
        notes.append(f"Nango's {script} is not run: Keyway has no code for it")
    _drop_doc_sections(entry)
    categories = [c for c in entry.get("categories") or [] if c not in _NOT_A_CATEGORY]
    if "categories" in entry:
        entry["categories"] = categories or ["other"]
    mode = str(resolved.get("auth_mode"))
    if isinstance(entry.get("proxy"), dict):
        proxy = entry["proxy"]
        if _drop_generic_headers(proxy):
            differences["proxy.headers"] = HEADERS_REASON
        if _keyway_user_agent(proxy.get("headers")):
            differences["proxy.headers"] = " ".join(filter(None, (differences.get("proxy.headers"), USER_AGENT_REASON)))
        if isinstance(proxy.get("verification"), dict):
            _keyway_user_agent(proxy["verification"].get("headers"))
        _fix_verification(proxy, mode, notes)
    problem = _move_query(entry, differences)
    if problem:
        return Refused(name, problem)
    problem = _why_not({**resolved, **entry})
    if problem:
        return Refused(name, problem)
    _declare_token_fields(entry, {**resolved, **entry}, differences)
    if docs or entry.get("docs"):
        entry["docs"] = str(docs or entry["docs"]).replace("http://", "https://", 1)
    problem = _fit_host_fields(entry, {**resolved, **entry}, notes)
    if problem:
        return Refused(name, problem)
    family = family_of(name, categories or resolved.get("categories") or [])
    return Draft(name, family, _keyway_order(entry), differences, notes)


# Keyway's order of an entry's keys: what it is, how it connects, where requests go, then the forms,
# the documentation and the categories.
_FIRST = ("display_name", "alias", "auth_mode")
_LAST = ("connection_config", "credentials", "docs", "categories")


def _keyway_order(entry: Mapping[str, Any]) -> dict[str, Any]:
    middle = [key for key in entry if key not in _FIRST and key not in _LAST]
    return {key: entry[key] for key in (*_FIRST, *middle, *_LAST) if key in entry}


_HOST_PATTERN = r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$"
_HOST_SLOT = re.compile(r"^https://\$\{connectionConfig\.([A-Za-z0-9_.-]+)\}(/?$)?(?=[/:]|$)")


def _fit_host_fields(entry: dict[str, Any], merged: Mapping[str, Any], notes: list[str]) -> str | None:
    """A field that fills a URL's host takes a host name in Keyway (no scheme, no port; a path only
    where the URL is ``https://`` and the field alone). Where Nango's pattern demands more (a scheme)
    or its example shows more, the field gets a host name's pattern and example; where the example
    is a host and a path that Keyway cannot take, the entry is refused."""
    config = merged.get("connection_config") if isinstance(merged.get("connection_config"), dict) else {}
    assert isinstance(config, dict)
    uses: dict[str, bool] = {}  # field -> whether every use is the whole URL (a path is then allowed)
    for url in _urls(merged):
        for part in url.split("||"):
            match = _HOST_SLOT.match(part.strip())
            if match:
                uses[match.group(1)] = uses.get(match.group(1), True) and match.group(2) is not None
    for name, whole in sorted(uses.items()):
        spec = config.get(name)
        if not isinstance(spec, dict) or name in (merged.get("token_response_metadata") or []):
            continue  # the provider's answer fills it, not a person: nothing to hold to a form
        example = str(spec.get("example") or "")
        bare = re.sub(r"^[a-z]+://", "", example)
        hostport, _, path = bare.partition("/")
        host = hostport.partition(":")[0]
        if path.strip("/") and not whole:
            return f"${{connectionConfig.{name}}} is a host and a path ({example}); Keyway fills a host name there"
        pattern = str(spec.get("pattern") or "")
        if (
            bare == example
            and host == hostport
            and (not pattern or _takes(pattern, bare or "acme.example.com") or _takes(pattern, "acme.example.com"))
        ):
            continue
        fixed = {**spec, "pattern": _HOST_PATTERN if not whole else r"^[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)*/?$"}
        if example:
            fixed["example"] = host + (f"/{path}" if whole and path else "")
        entry["connection_config"] = {**config, **(entry.get("connection_config") or {}), name: fixed}
        config = entry["connection_config"]
        notes.append(
            f"{name}: a host name{' and path' if whole else ''} only; Nango's pattern or example has a scheme or"
            " a port, which Keyway's URL checks refuse there"
        )
    return None


def _takes(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def draft_entries(
    nango: Mapping[str, Any], existing: Mapping[str, Mapping[str, Any]], docs_links: Mapping[str, str] | None = None
) -> tuple[list[Draft], list[Refused]]:
    """Drafts of Nango's entries that ``existing`` (Keyway's entries, aliases resolved) lacks and
    Keyway has a flow for, and the refused ones. An entry aliasing one Keyway has is read over
    Keyway's: that is the entry it will extend."""
    have = set(existing)
    resolved = resolve_aliases({**nango, **{name: dict(entry) for name, entry in existing.items()}})
    drafts: list[Draft] = []
    refused: list[Refused] = []
    for name, own in nango.items():
        if name in have or not isinstance(own, dict):
            continue
        if resolved[name].get("auth_mode") in NANGO_ONLY_MODES:
            continue  # no flow in Keyway yet: nothing to draft
        alias = own.get("alias")
        if alias and alias not in have and alias not in nango:
            refused.append(Refused(name, f"aliases {alias!r}, which neither catalog has"))
            continue
        result = _draft(name, own, resolved[name], (docs_links or {}).get(name))
        if isinstance(result, Draft):
            drafts.append(result)
        else:
            refused.append(result)
    # An alias of a refused entry has nothing to stand on.
    gone = {item.name for item in refused}
    for draft in list(drafts):
        if draft.entry.get("alias") in gone:
            drafts.remove(draft)
            refused.append(Refused(draft.name, f"aliases {draft.entry['alias']!r}, which is refused"))
    return drafts, refused


def _dump(entries: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(entries), sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)


def _write(drafts: list[Draft], refused: list[Refused], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    families: dict[str, list[Draft]] = {}
    for draft in sorted(drafts, key=lambda d: d.name):
        families.setdefault(draft.family, []).append(draft)
    for family, members in families.items():
        chunks = []
        for draft in members:
            comment = "".join(f"# {note}\n" for note in draft.notes)
            chunks.append(comment + _dump({draft.name: draft.entry}))
        (out_dir / f"{family}.yaml").write_text("".join(chunks), encoding="utf-8")
    kept = {draft.name: draft.differences for draft in sorted(drafts, key=lambda d: d.name) if draft.differences}
    differences = yaml.safe_dump(kept, sort_keys=False, width=100, allow_unicode=True)  # as the kept list is
    (out_dir / "differences.yaml").write_text(differences, encoding="utf-8")
    (out_dir / "refused.txt").write_text("".join(f"{item.name}: {item.reason}\n" for item in refused), encoding="utf-8")


def add_import_parser(providers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = providers.add_parser("import-nango", help="draft Keyway entries from a Nango providers.yaml")
    cmd.add_argument("nango_file", metavar="NANGO_FILE", help="Nango's providers.yaml (@nangohq/providers)")
    cmd.add_argument("--provider", action="append", default=[], help="only this provider (repeatable)")
    cmd.add_argument("--docs-links", metavar="FILE", help="a JSON object: provider -> its API documentation URL")
    cmd.add_argument("--out", metavar="DIR", help="write <family>.yaml, differences.yaml and refused.txt here")


def import_command(args: argparse.Namespace, *, out: TextIO) -> int:
    try:
        nango = _read_nango(Path(args.nango_file))
        links = json.loads(Path(args.docs_links).read_text(encoding="utf-8")) if args.docs_links else {}
        catalog = load_catalog()
        existing = {name: catalog.raw(name) or {} for name in catalog.names()}
    except (CatalogError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=out)
        return 2
    if args.provider:
        wanted = set(args.provider)
        needed = wanted | _alias_targets(nango, wanted)
        nango = {name: entry for name, entry in nango.items() if name in needed}
    drafts, refused = draft_entries(nango, existing, links)
    if args.provider:
        drafts = [draft for draft in drafts if draft.name in wanted]
        refused = [item for item in refused if item.name in wanted]
    if args.out:
        _write(drafts, refused, Path(args.out))
    else:
        for draft in drafts:
            print(f"# -> providers.d/{draft.family}.yaml", file=out)
            print("".join(f"# {note}\n" for note in draft.notes) + _dump({draft.name: draft.entry}), end="", file=out)
        for item in refused:
            print(f"# refused {item.name}: {item.reason}", file=out)
    print(f"drafted: {len(drafts)}, refused: {len(refused)}", file=out)
    return 0


def _read_nango(path: Path) -> dict[str, Any]:
    """Nango's file as written (its aliases unresolved: a draft keeps its ``alias``)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level is not a mapping of provider name to template")
    return data


def _alias_targets(nango: Mapping[str, Any], wanted: set[str]) -> set[str]:
    """The entries the wanted ones alias, transitively: their drafts need them resolved."""
    found: set[str] = set()
    todo = list(wanted)
    while todo:
        entry = nango.get(todo.pop())
        alias = entry.get("alias") if isinstance(entry, dict) else None
        if isinstance(alias, str) and alias not in found:
            found.add(alias)
            todo.append(alias)
    return found

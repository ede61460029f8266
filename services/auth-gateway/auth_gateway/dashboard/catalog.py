"""What the pages need to know about a provider template: its fields, its connect flow, search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.providers import ProviderCatalog, ProviderTemplate

__all__ = [
    "CONNECT_KIND",
    "CREDENTIAL_FIELDS",
    "CatalogEntry",
    "InputField",
    "credential_fields",
    "integration_needs",
    "integration_settings",
    "param_fields",
    "search",
]

# How the Connect button runs the flow, per auth mode: the same calls the frontend SDK makes
# (``data-kind`` of the form, read by dashboard.js). A mode without a browser flow has no button.
# What each mode needs is read from the one list of modes (``keyway_shared.auth_modes``).
_BUTTON_KIND = {"popup": "popup", "form": "credentials", "none": "none"}
CONNECT_KIND: dict[str, str] = {
    mode: _BUTTON_KIND[facts.browser] for mode, facts in MODE_FACTS.items() if facts.browser is not None
}


@dataclass(frozen=True, kw_only=True)
class InputField:
    name: str
    label: str
    kind: str = "text"  # text | password | textarea
    example: str | None = None
    pattern: str | None = None
    required: bool = True


# The credentials a person types for each auth mode, named as the SDK's ``credentials`` option names them.
CREDENTIAL_FIELDS: dict[str, list[InputField]] = {
    mode: [InputField(name=f.name, label=f.label, kind=f.kind, required=f.required) for f in facts.typed]
    for mode, facts in MODE_FACTS.items()
    if facts.typed
}


def credential_fields(template: ProviderTemplate | None) -> list[InputField]:
    """What a person types to connect ``template`` (``ProviderTemplate.typed_credentials``)."""
    if template is None:
        return []
    return [
        InputField(name=f.name, label=f.label, kind=f.kind, required=f.required, example=f.example, pattern=f.pattern)
        for f in template.typed_credentials()
    ]


def param_fields(template: ProviderTemplate) -> list[InputField]:
    """The connection configuration a person supplies (``params[...]``): declared ones, then interpolated ones."""
    fields: list[InputField] = []
    for name, spec in template.person_fields().items():
        fields.append(
            InputField(
                name=name,
                label=str(spec.get("title") or name),
                example=str(spec["example"]) if spec.get("example") is not None else None,
                pattern=str(spec["pattern"]).removeprefix("^").removesuffix("$") if spec.get("pattern") else None,
                required=not spec.get("optional", False),
            )
        )
    declared = set(template.connection_config)  # a hidden or automated field is not asked for either
    for name in sorted(template.connection_config_variables() - declared):
        fields.append(InputField(name=name, label=name))
    return fields


@dataclass(frozen=True, kw_only=True)
class IntegrationNeeds:
    client: bool  # OAuth client id and secret
    scopes: bool
    app: bool  # GitHub App: app link, app id, private key
    plugin: bool  # a marketplace plugin: its install link and its token (kept in custom)
    callback: bool  # the person must register our callback URL with the provider
    settings: list[InputField]  # the template's integration_config (kept in custom), e.g. AWS's service


def integration_needs(template: ProviderTemplate) -> IntegrationNeeds:
    facts = MODE_FACTS[template.auth_mode]
    # An MCP server's client is Keyway's own, registered with the callback URL, unless the catalog
    # says it is the integration's (``client_registration: static``).
    brought = facts.own_client and template.client_registration == "static"
    return IntegrationNeeds(
        client=facts.client or brought,
        scopes=facts.scopes,
        app=facts.github_app,
        plugin=facts.plugin,
        callback=facts.browser == "popup" and (brought or not facts.own_client),
        settings=integration_settings(template),
    )


def integration_settings(template: ProviderTemplate) -> list[InputField]:
    """The template's ``integration_config`` fields, in their ``order``; a secret one is a password
    field (the form never shows a stored secret: blank keeps it)."""
    declared = [(name, spec) for name, spec in template.integration_config.items() if isinstance(spec, dict)]

    def order(item: tuple[str, dict[str, Any]]) -> int:
        place = item[1].get("order")
        return place if isinstance(place, int) else 1_000

    declared.sort(key=order)
    return [
        InputField(
            name=name,
            label=str(spec.get("title") or name),
            kind="password" if spec.get("secret") else "text",
            example=str(spec["example"]) if spec.get("example") is not None else None,
            required=False,  # checked where used: which ones a connection needs depends on the others
        )
        for name, spec in declared
    ]


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    name: str
    display_name: str
    auth_mode: str
    categories: list[str]
    docs: str | None


def search(catalog: ProviderCatalog, query: str) -> list[CatalogEntry]:
    """Providers whose name or display name holds every word of the query (case-insensitive)."""
    words = query.lower().split()
    found: list[CatalogEntry] = []
    for name in catalog.names():
        template = catalog.get(name)
        if template is None:
            continue
        display = template.display_name or name
        haystack = f"{name} {display}".lower()
        if all(word in haystack for word in words):
            found.append(
                CatalogEntry(
                    name=name,
                    display_name=display,
                    auth_mode=template.auth_mode,
                    categories=list(template.categories),
                    docs=template.docs,
                )
            )
    found.sort(key=lambda e: (not e.name.lower().startswith(words[0]) if words else False, e.display_name.lower()))
    return found

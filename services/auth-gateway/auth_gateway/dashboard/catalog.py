"""What the pages need to know about a provider template: its fields, its connect flow, search."""

from __future__ import annotations

from dataclasses import dataclass

from keyway_shared.providers import ProviderCatalog, ProviderTemplate

__all__ = [
    "CONNECT_KIND",
    "CREDENTIAL_FIELDS",
    "POPUP_MODES",
    "CatalogEntry",
    "InputField",
    "integration_needs",
    "param_fields",
    "search",
]

POPUP_MODES = frozenset({"OAUTH1", "OAUTH2", "CUSTOM", "APP"})
_CLIENT_MODES = frozenset({"OAUTH1", "OAUTH2", "OAUTH2_CC", "CUSTOM", "TBA"})

# How the Connect button runs the flow, per auth mode: the same calls the frontend SDK makes.
CONNECT_KIND = {
    "OAUTH1": "popup",
    "OAUTH2": "popup",
    "CUSTOM": "popup",
    "APP": "popup",
    "API_KEY": "credentials",
    "BASIC": "credentials",
    "OAUTH2_CC": "credentials",
    "APP_STORE": "credentials",
    "NONE": "none",
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
    "API_KEY": [InputField(name="apiKey", label="API key", kind="password")],
    "BASIC": [
        InputField(name="username", label="User name"),
        InputField(name="password", label="Password", kind="password", required=False),
    ],
    "OAUTH2_CC": [
        InputField(name="client_id", label="Client id"),
        InputField(name="client_secret", label="Client secret", kind="password"),
    ],
    "APP_STORE": [
        InputField(name="privateKeyId", label="Private key id"),
        InputField(name="issuerId", label="Issuer id"),
        InputField(name="privateKey", label="Private key (PEM)", kind="textarea"),
    ],
}


def param_fields(template: ProviderTemplate) -> list[InputField]:
    """The connection configuration a person supplies (``params[...]``): declared ones, then interpolated ones."""
    fields: list[InputField] = []
    for name, spec in template.connection_config.items():
        spec = spec if isinstance(spec, dict) else {}
        fields.append(
            InputField(
                name=name,
                label=str(spec.get("title") or name),
                example=str(spec["example"]) if spec.get("example") is not None else None,
                pattern=str(spec["pattern"]).removeprefix("^").removesuffix("$") if spec.get("pattern") else None,
                required=not spec.get("optional", False),
            )
        )
    declared = {f.name for f in fields}
    for name in sorted(template.connection_config_variables() - declared):
        fields.append(InputField(name=name, label=name))
    return fields


@dataclass(frozen=True, kw_only=True)
class IntegrationNeeds:
    client: bool  # OAuth client id and secret
    scopes: bool
    app: bool  # GitHub App: app link, app id, private key
    callback: bool  # the person must register our callback URL with the provider


def integration_needs(template: ProviderTemplate) -> IntegrationNeeds:
    mode = template.auth_mode
    return IntegrationNeeds(
        client=mode in _CLIENT_MODES,
        scopes=mode in {"OAUTH2", "CUSTOM", "OAUTH2_CC"},
        app=mode in {"APP", "CUSTOM"},
        callback=mode in POPUP_MODES,
    )


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

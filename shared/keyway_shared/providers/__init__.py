"""The provider catalog: templates describing how to authorize with and call each third-party API."""

from .catalog import CatalogError, ProviderCatalog, load_catalog
from .template import AUTH_MODES, ProviderTemplate, ProxyConfig, ProxyVerification, interpolation_variables

__all__ = [
    "AUTH_MODES",
    "CatalogError",
    "ProviderCatalog",
    "ProviderTemplate",
    "ProxyConfig",
    "ProxyVerification",
    "interpolation_variables",
    "load_catalog",
]

"""The provider catalog: templates describing how to authorize with and call each third-party API."""

from .catalog import CatalogCheck, CatalogError, EntryProblem, ProviderCatalog, check_files, load_catalog
from .template import (
    AUTH_MODES,
    ProviderTemplate,
    ProxyConfig,
    ProxyRetry,
    ProxyVerification,
    interpolation_variables,
)

__all__ = [
    "AUTH_MODES",
    "CatalogCheck",
    "CatalogError",
    "EntryProblem",
    "ProviderCatalog",
    "ProviderTemplate",
    "ProxyConfig",
    "ProxyRetry",
    "ProxyVerification",
    "check_files",
    "interpolation_variables",
    "load_catalog",
]

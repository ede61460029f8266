"""The provider catalog's error, in a module of its own so that the YAML reader (imported only when
a YAML file is read) and the catalog can both raise it without importing each other."""

from __future__ import annotations

__all__ = ["CatalogError"]


class CatalogError(ValueError):
    """The catalog file could not be read or an entry is invalid."""

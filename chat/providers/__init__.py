"""Providers (one module per kind) and the catalog of ``<credential>/<model>`` names."""

from chat.providers.catalog import (
    Catalog,
    ModelInfo,
    ResolvedModel,
    UnknownModel,
    get_catalog,
    reset_catalog,
)

__all__ = [
    "Catalog",
    "ModelInfo",
    "ResolvedModel",
    "UnknownModel",
    "get_catalog",
    "reset_catalog",
]

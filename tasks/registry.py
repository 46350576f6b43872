"""Registry of dataset specs: built-ins by decorator, third parties by entry point.

Third-party packages add datasets through the ``suite.tasks`` entry-point group; an
entry point may name a :class:`DatasetSpec`, a list of specs, or a callable that
returns either.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, Iterable

from suite.errors import ConfigError, NotFoundError

from .spec import DatasetSpec

ENTRY_POINT_GROUP = "suite.tasks"
_REGISTRY: dict[str, DatasetSpec] = {}
_plugins_loaded = False


class UnknownDatasetError(NotFoundError):
    """No dataset of that name is registered."""


def register_dataset(spec: DatasetSpec | Callable[[], DatasetSpec]) -> DatasetSpec | Callable[[], DatasetSpec]:
    """Register a spec (usable as a decorator on a function returning one)."""
    value = spec() if callable(spec) and not isinstance(spec, DatasetSpec) else spec
    if not isinstance(value, DatasetSpec):
        raise TypeError(f"register_dataset expects a DatasetSpec, got {type(value).__name__}")
    if value.name in _REGISTRY and _REGISTRY[value.name] != value:
        raise ConfigError(f"dataset {value.name!r} is already registered with a different spec")
    _REGISTRY[value.name] = value
    return spec


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if callable(obj) and not isinstance(obj, DatasetSpec):
            obj = obj()
        specs: Iterable = obj if isinstance(obj, (list, tuple)) else [obj]
        for spec in specs:
            register_dataset(spec)


def list_datasets() -> list[str]:
    from . import builtin  # noqa: F401  (registers the eight built-ins)
    _load_plugins()
    return list(_REGISTRY)


def get_dataset_spec(name: str) -> DatasetSpec:
    known = list_datasets()
    if name not in _REGISTRY:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(known)}")
    return _REGISTRY[name]

"""Registry of dataset specs: built-ins by decorator, third parties by entry point.

Third-party packages add datasets through the ``metaft.tasks`` entry-point group (the old ``suite.tasks`` still works, with a warning); an entry point
may name a :class:`DatasetSpec`, a list of specs, or a callable that returns either. A spec is
registered under its own ``name``. The policy (order, duplicates, type check, "did you mean") is
`suite.registry.Registry`'s.
"""
from __future__ import annotations

from typing import Any, Callable

from metaft.suite.foundation.errors import NotFoundError
from metaft.suite.foundation.registry import Registry

from .spec import DatasetSpec

ENTRY_POINT_GROUP = "metaft.tasks"
LEGACY_GROUP = "suite.tasks"  # read with a migration warning


class UnknownDatasetError(NotFoundError):
    """No dataset of that name is registered."""


def _specs(entry: Any) -> list[tuple[str | None, Any]]:
    value = entry() if callable(entry) and not isinstance(entry, DatasetSpec) else entry
    specs = value if isinstance(value, (list, tuple)) else [value]
    return [(getattr(spec, "name", None), spec) for spec in specs]


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset", base=DatasetSpec, group=ENTRY_POINT_GROUP, legacy_groups=(LEGACY_GROUP,), builtins=("metaft.tasks.builtin",), load_entry=_specs,
    not_found=UnknownDatasetError)


def register_dataset(spec: DatasetSpec | Callable[[], DatasetSpec]) -> DatasetSpec | Callable[[], DatasetSpec]:
    """Register a spec (usable as a decorator on a function returning one)."""
    for name, value in _specs(spec):
        DATASETS.register(name or "?", value)
    return spec


def list_datasets() -> list[str]:
    return DATASETS.names()


def get_dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)

"""One generic registry for everything a user can name: algorithms, datasets, metrics, task types.

Modelled on lm-evaluation-harness's registry: built-ins register by decorator when their module
is imported, third-party packages by an entry point that is loaded lazily, on the first lookup.
One policy everywhere:

- names list built-ins first, in the order of the ``builtins`` modules and of their definitions
  within a module (whichever module happened to be imported first), then everything else in
  registration order;
- registering a different object under a taken name is an error (re-registering the same
  object is a no-op, so a module imported twice or a package that also declares its own
  built-ins as entry points is harmless), for decorators and entry points alike;
- an entry in a registry with a ``base`` must be a subclass (classes) or instance (objects) of it;
- an unknown name raises `NotFoundError` listing the known names, with "did you mean" when one
  is close.

Like `metaft.suite.foundation.errors`, this module imports nothing from the project, so every layer can use it.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError, NotFoundError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, with built-ins imported on first use and entry-point plugins loaded lazily.

    ``builtins`` names modules whose import registers the built-ins; ``group`` is the entry-point
    group; ``legacy_groups`` are old group names still read (same policy, plus a FutureWarning
    that names the new group).
    """

    def __init__(self, kind: str, *, base: type | None = None, group: str | None = None,
                 legacy_groups: tuple[str, ...] = (), builtins: tuple[str, ...] = (),
                 load_entry: Callable[[Any], list[tuple[str | None, Any]]] | None = None,
                 not_found: type[NotFoundError] = NotFoundError) -> None:
        self.kind = kind
        self.not_found = not_found
        self.base = base
        self.group = group
        self.legacy_groups = legacy_groups
        self.builtins = builtins
        self._load_entry = load_entry
        self._entries: dict[str, T] = {}
        self._order: dict[str, tuple[int, int]] = {}  # name -> (rank of its built-in module, sequence)
        self._loaded = False

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Any:
        """``registry.register("x", obj)``, or ``@registry.register("x")`` on a class or function."""
        if obj is None:
            def deco(value: T) -> T:
                self.register(name, value)
                return value
            return deco
        self._check_type(name, obj)
        current = self._entries.get(name)
        if current is not None and current is not obj and current != obj:
            raise ConfigError(f"{self.kind} {name!r} is already registered by {_origin(current)}; "
                              f"{_origin(obj)} must use another name")
        if name not in self._entries:
            module = getattr(obj, "__module__", None) if inspect.isclass(obj) else None
            rank = self.builtins.index(module) if module in self.builtins else len(self.builtins)
            self._order[name] = (rank, len(self._order))
        self._entries[name] = obj
        return obj

    def _check_type(self, name: str, obj: Any) -> None:
        if self.base is None:
            return
        is_class = inspect.isclass(obj)
        if not (issubclass(obj, self.base) if is_class else isinstance(obj, self.base)):
            relation = "a subclass" if is_class else "an instance"
            raise ConfigError(f"{self.kind} {name!r} from {_origin(obj)} is not {relation} of "
                              f"{self.base.__module__}.{self.base.__name__}")

    # -- lookup ---------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        for module in self.builtins:  # cheap after the first time: modules are cached
            importlib.import_module(module)
        if self._loaded:
            return
        self._loaded = True
        for group in (self.group, *self.legacy_groups):
            if group is None:
                continue
            for ep in entry_points(group=group):
                if group != self.group:
                    warnings.warn(f"{ep.value} is declared in the old entry-point group {group!r}; declare it "
                                  f"under {self.group!r} (the old group will stop being read)", FutureWarning,
                                  stacklevel=2)
                loaded = ep.load()
                pairs = self._load_entry(loaded) if self._load_entry else [(ep.name, loaded)]
                for name, obj in pairs:
                    self.register(name or ep.name, obj)

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries, key=self._order.__getitem__)

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.not_found(f"unknown {self.kind} {name!r}{hint}; available: "
                                f"{', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _origin(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return str(module)

"""Algorithm registry: built-ins by decorator, third-party plugins by entry point.

Like lm-evaluation-harness, a plugin package declares
``[project.entry-points."suite.algorithms"] name = "pkg.module:Class"`` and
``get_algorithm(name)`` finds it without the suite importing the package by hand.
"""
from __future__ import annotations

import dataclasses
from importlib.metadata import entry_points
from typing import Any, Callable

from suite.errors import ConfigError

ENTRY_POINT_GROUP = "suite.algorithms"
_REGISTRY: dict[str, type] = {}
_plugins_loaded = False


class AlgorithmError(ConfigError):
    """Unknown algorithm or hyperparameter; the message lists the valid ones."""


def register_algorithm(name: str) -> Callable[[type], type]:
    """Class decorator: ``@register_algorithm("reptile")``."""
    def deco(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise AlgorithmError(f"algorithm {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def _load_builtins_and_plugins() -> None:
    global _plugins_loaded
    from . import builtin, transfer  # noqa: F401  (registers the built-ins)
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        cls = ep.load()
        register_algorithm(ep.name)(cls)


def list_algorithms() -> list[str]:
    _load_builtins_and_plugins()
    return sorted(_REGISTRY)


def algorithm_class(name: str) -> type:
    known = list_algorithms()
    if name not in _REGISTRY:
        raise AlgorithmError(f"unknown algorithm {name!r}; available: {', '.join(known)}")
    return _REGISTRY[name]


def get_algorithm(name: str, **hparams: Any):
    """An algorithm instance; unknown hyperparameters fail with the valid ones."""
    cls = algorithm_class(name)
    config_cls = cls.Config
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(hparams) - valid)
    if unknown:
        raise AlgorithmError(f"unknown hyperparameter(s) {', '.join(unknown)} for {name!r}; "
                             f"valid: {', '.join(sorted(valid))}")
    return cls(config_cls(**hparams))

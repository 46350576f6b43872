"""Algorithm registry: built-ins by decorator, third-party plugins by entry point.

A plugin package declares ``[project.entry-points."metaft.algorithms"] name = "pkg.module:Class"``
(an `Algorithm` subclass) and ``get_algorithm(name)`` finds it without any edit to the suite.
The policy (order, duplicates, type check, "did you mean") is `suite.registry.Registry`'s.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, TypeVar

from metaft.suite.foundation.errors import ConfigError, NotFoundError
from metaft.suite.foundation.registry import Registry

from .base import Algorithm

ENTRY_POINT_GROUP = "metaft.algorithms"
LEGACY_GROUP = "suite.algorithms"  # read with a migration warning


class AlgorithmError(ConfigError):
    """Unknown algorithm or hyperparameter; the message lists the valid ones."""


class UnknownAlgorithmError(AlgorithmError, NotFoundError):
    """No algorithm of that name is registered."""


ALGORITHMS: Registry[type[Algorithm]] = Registry(
    "algorithm", base=Algorithm, group=ENTRY_POINT_GROUP, legacy_groups=(LEGACY_GROUP,),
    builtins=("metaft.algorithms.builtin", "metaft.algorithms.transfer"),
    not_found=UnknownAlgorithmError)


A = TypeVar("A", bound=type[Algorithm])


def register_algorithm(name: str) -> Callable[[A], A]:
    """Class decorator: ``@register_algorithm("reptile")``; the class's ``name`` becomes ``name``."""
    def deco(cls: A) -> A:
        ALGORITHMS.register(name, cls)
        cls.name = name
        return cls
    return deco


def list_algorithms() -> list[str]:
    return ALGORITHMS.names()


def algorithm_class(name: str) -> type[Algorithm]:
    cls = ALGORITHMS.get(name)
    if getattr(cls, "name", None) != name:  # registered from an entry point: rows carry the registered name
        cls.name = name
    return cls


def get_algorithm(name: str, **hparams: Any) -> Algorithm:
    """An algorithm instance; unknown hyperparameters fail with the valid ones."""
    cls = algorithm_class(name)
    config_cls = cls.Config
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(hparams) - valid)
    if unknown:
        raise AlgorithmError(f"unknown hyperparameter(s) {', '.join(unknown)} for {name!r}; "
                             f"valid: {', '.join(sorted(valid))}")
    return cls(config_cls(**hparams))

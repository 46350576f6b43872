"""Which recipes exist: one `Recipe` declaration each, in one registry that plugins join.

A recipe is how a task is fine-tuned once its start (the algorithm's init) is chosen
(`suite/recipes.py` holds the built-in three and says what each does). This module is light (no
torch), so validating a config or listing recipes costs no import; a recipe's code is named as
``module:function`` and imported on first use. A third-party package adds one through the
``metaft.recipes`` entry-point group (the value: a `Recipe`); the function receives a
`metaft.suite.recipes.RecipeTask` and returns a `metaft.suite.recipes.RecipeResult`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .foundation.errors import ConfigError
from .foundation.registry import Registry


@dataclass(frozen=True)
class Recipe:
    name: str
    task_types: tuple[str, ...] | None  # None: every task type
    summary: str
    uses_lr: bool = True  # False: nothing is trained, so there is no learning rate to choose
    run: str = ""  # "module:function": RecipeTask -> RecipeResult

    def resolve(self) -> Callable[[Any], Any]:
        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)


RECIPES: Registry[Recipe] = Registry("recipe", base=Recipe, group="metaft.recipes",
                                     builtins=("metaft.suite.recipe_registry",))


def register_recipe(recipe: Recipe) -> Recipe:
    return RECIPES.register(recipe.name, recipe)


def get_recipe(name: str) -> Recipe:
    return RECIPES.get(name)


def check_serves(name: str, task_types: Sequence[str]) -> None:
    """A recipe that cannot fine-tune one of the benchmark's task types is refused before any work."""
    recipe = get_recipe(name)
    if recipe.task_types is None:
        return
    bad = sorted(set(task_types) - set(recipe.task_types))
    if bad:
        raise ConfigError(f"recipe {name!r} serves {', '.join(recipe.task_types)} tasks, but this benchmark "
                          f"meta-tests {', '.join(bad)}; use --recipe finetune for those, or --datasets with "
                          f"classification datasets only")


_IMPL = "metaft.suite.recipes"
register_recipe(Recipe("finetune", None, "the shared Adam fine-tuning (or the algorithm's own adaptation)",
                       run=f"{_IMPL}:finetune_task"))
register_recipe(Recipe("linear-probe", ("classification",), "frozen encoder + logistic regression on the support set",
                       uses_lr=False, run=f"{_IMPL}:linear_probe_task"))
register_recipe(Recipe("setfit", ("classification",),
                       "SetFit: contrastive pairs, cosine loss on the encoder, logistic head", run=f"{_IMPL}:setfit_task"))
for _method, _name in (("LoRA", "finetune-lora"), ("IA3", "finetune-ia3")):
    register_recipe(Recipe(_name, None, f"fresh {_method} adapters on the start, the shared loop for their own budget",
                           run=f"{_IMPL}:adapter_task"))

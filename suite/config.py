"""Run configuration: a typed dataclass, presets in TOML, overrides from a file and the CLI.

Resolution order: the preset (``quick`` or ``paper``), then ``--config FILE`` (TOML or
YAML), then explicit command-line options. Unknown keys and wrong types are errors
that name the key and the file.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .foundation.errors import SuiteError
from .settings import at_least, check_value, fingerprint_dict, finite_positive, in_range, schema, setting

PRESETS = ("quick", "study", "paper")
MAX_SEED = 2**32 - 1
PRECISIONS = ("fp32", "bf16", "auto")
MAX_TASKS = 10_000
SHAPE_KEYS = ("ways", "shots", "queries")
EVAL_MODES = ("shared", "own", "hindsight")
RECIPE_NAMES = ("finetune", "linear-probe", "setfit", "finetune-lora", "finetune-ia3")  # the built-ins
# (suite/recipe_registry.py; plugins add more). The adapter recipes put fresh adapters of this method on
# the start and fine-tune them with the shared loop for their own budget (`adapter_steps`).
ADAPTER_RECIPES = {"finetune-lora": "lora", "finetune-ia3": "ia3"}
# LoRA: chosen on the study's 4 validation tasks from 1e-4 / 3e-4 / 1e-3 at 128 steps (mean final accuracy
# 0.609 / 0.637 / 0.633, docs/recipes.md); IA3: the (IA)^3 paper's 3e-3 (Liu et al. 2022), not measured here
ADAPTER_LRS = {"lora": 3e-4, "ia3": 3e-3}
# where the query metric is measured during fine-tuning (suite/evaluate.py: eval_schedule): "log2"
# (0, 1, 2, 4, ... and the last step; the curves that costs and the frontier read) or "ends" (step 0
# and the last step only: the same final metric; measured on the 16-task budget test, AVX2-only
# 2-core machine: 1174 s against 1309 s with log2, 10% less)
CURVE_POINTS = ("log2", "ends")
DEFAULT_RECIPE = RECIPE_NAMES[0]  # suite/recipes.py holds each one's definition


# Choices owned by lower layers (which import torch or numpy, so `suite --help` cannot import them):
# tests/test_settings.py checks that these copies equal tasks/benchmark.py's and
# algorithms/transformer_learner.py's
PROTOCOLS = ("cross-dataset", "in-dataset")
POOLINGS = ("auto", "mean", "mean-normalized", "first", "last")
HEAD_INITS = ("proto", "zero", "random")
PEFT_METHODS = ("none", "lora", "ia3")  # suite/adapters.py applies them
TARGETS = ("baseline", "best")
EVALUATE_ON = ("meta-test", "meta-val")
ENGINES = ("torch", "deepspeed")


def _tasks_per_side(low: int):
    def check(v):
        if v < low:
            return f"must be >= {low}, got {v}"
        return None if v <= MAX_TASKS else (f"must be at most {MAX_TASKS:,} tasks per side (episode manifests grow "
                                            f"with it), got {v:,}")
    return check


def _seeds(values):
    wrong = [s for s in values if not 0 <= s <= MAX_SEED]
    if not values:
        return "must hold at least one seed"
    return f"must be integers in [0, {MAX_SEED}] (numpy's seed range), got {wrong[0]}" if wrong else None


def _known_recipe(name):
    from .recipe_registry import RECIPES

    return None if name in RECIPES else f"must be a registered recipe ({', '.join(RECIPES.names())}), got {name!r}"


def _device(v):
    return None if v in ("auto", "cpu", "cuda") or v.startswith("cuda:") else f"must be auto, cpu or cuda, got {v!r}"


def _with_peft(config) -> bool:
    return config.peft != "none"


def _with_adapters(config) -> bool:  # adapters in the run: on the backbone (--peft) or the recipe's
    return config.peft != "none" or config.recipe in ADAPTER_RECIPES


def _with_adapter_recipe(config) -> bool:
    return config.recipe in ADAPTER_RECIPES


def _with_own_recipe(config) -> bool:  # (linear-probe runs hash the SetFit settings too: their ids predate this)
    return config.recipe != DEFAULT_RECIPE


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (and nothing that does not). Each field is one
    setting of the schema (`suite/settings.py`): flags, validation, fingerprint and the settings
    reference all come from these declarations."""

    algo: str = setting("reptile", "algorithm (see `suite algorithms`)", flag="--algo", tune=False)
    models: list[str] = setting(help="models: Hub ids, local folders, or 'minilm' (packaged, offline)",
                                factory=lambda: ["minilm"], flag="--model", tune=False, metavar="MODEL[,MODEL]")
    preset: str = setting("quick", "the budget preset the run started from", choices=PRESETS,
                          set_by="--preset")
    protocol: str = setting("cross-dataset", "benchmark protocol", flag="--benchmark", aliases=("--protocol",),
                            choices=PROTOCOLS)
    datasets: list[str] = setting(help="subset of datasets (empty: the protocol's)", factory=list, flag="--datasets",
                                  metavar="NAME[,NAME]")
    seeds: list[int] = setting(help="one or more seeds", factory=lambda: [0], flag="--seed", check=_seeds, tune=False)
    n_meta_train: int = setting(24, "meta-training tasks", flag="--meta-train-tasks", check=_tasks_per_side(0))
    n_meta_test: int = setting(12, "meta-test tasks", flag="--meta-test-tasks", check=_tasks_per_side(1))
    n_meta_val: int = setting(0, "validation tasks (held-out parts of the meta-training datasets) for choosing the lr",
                              flag="--val-tasks", check=_tasks_per_side(0))
    val_fraction: float = setting(0.2, "share of each meta-training dataset held out for validation tasks",
                                  check=in_range(0, 1))
    shapes: dict[str, dict[str, int]] = setting(help="episode shape per task type: ways, shots, queries",
                                                factory=dict)
    max_length: int = setting(128, "maximum tokens per sequence", flag="--max-length", check=at_least(1))
    stride: int = setting(32, "overlap of QA context windows (at most max_length/2)", check=at_least(0))
    batch_size: int = setting(16, "training batch size", flag="--batch-size", check=at_least(1), group="fine-tuning")
    eval_batch_size: int = setting(32, "evaluation batch size", flag="--eval-batch-size", check=at_least(1),
                                   group="fine-tuning")
    meta_epochs: int = setting(1, "passes over the meta-training tasks", flag="--meta-epochs", check=at_least(0),
                               group="meta-training")
    meta_batch_size: int = setting(2, "episodes per outer step", flag="--meta-batch-size", check=at_least(1),
                                   hyperparameter="algorithm", group="meta-training")
    inner_steps: int = setting(3, "inner-loop steps per episode", flag="--inner-steps", check=at_least(0),
                               hyperparameter="algorithm", group="meta-training")
    inner_lr: float = setting(1e-3, "inner-loop learning rate", flag="--inner-lr", check=finite_positive,
                              hyperparameter="algorithm", group="meta-training")
    outer_lr: float = setting(1e-4, "outer (meta) learning rate", flag="--outer-lr", check=finite_positive,
                              hyperparameter="algorithm", group="meta-training")
    first_order: bool = setting(False, "first-order fallback for maml/metasgd", flag="--first-order",
                                group="meta-training")
    finetune_lr: float = setting(5e-5, "fine-tuning learning rate", flag="--finetune-lr", check=finite_positive,
                                 hyperparameter="algorithm", group="fine-tuning")
    finetune_lr_grid: list[float] = setting(help="fine-tuning lrs; the best per task type on the validation tasks is "
                                                 "used (empty: finetune_lr)", factory=list, flag="--finetune-lr-grid",
                                            check=finite_positive, metavar="LR[,LR]", group="fine-tuning")
    finetune_epochs: int = setting(3, "fine-tuning epochs over the support set (when no budget or ft_steps is set)",
                                   flag="--finetune-epochs", check=at_least(0), group="fine-tuning")
    ft_steps: int = setting(0, "fine-tuning steps of every task type (0: the budgets, else finetune_epochs)",
                            flag="--ft-steps", check=at_least(0), group="fine-tuning")
    budgets: dict[str, int] = setting(help="fine-tuning steps per task type", factory=dict, group="fine-tuning")
    eval_mode: str = setting("shared", "shared: the same fine-tuning for every algorithm (primary); own: the "
                             "algorithm's own adaptation (SGD at the inner lr; head only for anil; learned step sizes "
                             "for metasgd); hindsight: the oracle bound of intermediate (every source, best on the "
                             "query set; never ranked)", flag="--eval-mode", choices=EVAL_MODES, group="fine-tuning")
    recipe: str = setting(DEFAULT_RECIPE, "how each task is fine-tuned from the algorithm's start: finetune (the "
                          "shared loop), linear-probe (frozen encoder + logistic regression), setfit (contrastive "
                          "pairs + logistic head), finetune-lora / finetune-ia3 (fresh adapters on the start, the "
                          "shared loop for --adapter-steps; docs/recipes.md); linear-probe and setfit serve "
                          "classification only; a plugin's from the metaft.recipes entry-point group",
                          flag="--recipe", check=_known_recipe, fingerprint="unless-default", group="fine-tuning")
    setfit_iterations: int = setting(20, "SetFit's pair iterations: 2 x iterations x support pairs (0: SetFit's "
                                     "oversampling)", flag="--setfit-iterations", check=at_least(0),
                                     applies=_with_own_recipe, group="fine-tuning")
    setfit_lr_grid: list[float] = setting(help="SetFit body lrs; several are chosen on the validation tasks",
                                          factory=lambda: [2e-5], flag="--setfit-lr-grid", check=finite_positive,
                                          applies=_with_own_recipe, metavar="LR[,LR]", group="fine-tuning")
    # 128 steps: LoRA's curve from B = 0 is still rising at full fine-tuning's 32 steps and peaks by 64 of
    # 128 on the study's tasks (docs/recipes.md, "The adapter recipes"); the lr: ADAPTER_LRS above
    adapter_steps: int = setting(128, "steps of the adapter recipes (finetune-lora, finetune-ia3): their own budget, "
                                 "since fresh adapters learn slower than the full model", flag="--adapter-steps",
                                 check=at_least(1), applies=_with_adapter_recipe, group="fine-tuning")
    adapter_lr_grid: list[float] = setting(help="learning rates of the adapter recipes; several are chosen on the "
                                           "validation tasks (empty: the method's measured default, LoRA "
                                           f"{ADAPTER_LRS['lora']:g}, IA3 {ADAPTER_LRS['ia3']:g})", factory=list,
                                           flag="--adapter-lr-grid",
                                           check=finite_positive, applies=_with_adapter_recipe, metavar="LR[,LR]",
                                           group="fine-tuning")
    evaluate_on: str = setting("meta-test", "meta-val: fine-tune and score the validation tasks (for tuning)",
                               choices=EVALUATE_ON)
    pooling: str = setting("auto", "sentence vector of the classification head (auto: what the checkpoint was "
                           "trained with)", flag="--pooling", choices=POOLINGS, group="model")
    head_init: str = setting("proto", "classification head at step 0: class prototypes, zeros or random",
                             flag="--head-init", choices=HEAD_INITS, hyperparameter="run", group="model")
    peft: str = setting("none", "adapters on a frozen backbone; every algorithm then learns and fine-tunes the "
                        "adapters and heads only (none: full fine-tuning)", flag="--peft", choices=PEFT_METHODS,
                        fingerprint="unless-default", group="adapters")
    lora_r: int = setting(8, "LoRA rank", flag="--lora-r", applies=_with_adapters, group="adapters")
    lora_alpha: int = setting(16, "LoRA alpha", flag="--lora-alpha", applies=_with_adapters, group="adapters")
    peft_targets: list[str] = setting(help="module names to adapt (empty: peft's choice for the architecture)",
                                      factory=list, flag="--peft-targets", applies=_with_adapters, metavar="NAME[,NAME]",
                                      group="adapters")
    freeze_embeddings: bool = setting(False, "freeze the embeddings (saves memory on large models)",
                                      flag="--freeze-embeddings", group="model")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (saves memory)",
                                           flag="--gradient-checkpointing", group="model")
    precision: str = setting("fp32", "bf16: the encoder under autocast, fp32 weights and optimizer state (needs "
                             "avx512_bf16/AMX or a CUDA GPU with bf16, refused otherwise); auto: bf16 where native, "
                             "else fp32, resolved before the run id. Part of the protocol: bf16 and fp32 rows never "
                             "pair", flag="--precision", choices=PRECISIONS, fingerprint="unless-default",
                             group="engine")
    curve_points: str = setting("log2", "where the query metric is measured while fine-tuning: log2 (0, 1, 2, 4, ... "
                                "and the last step; the curves costs and the frontier read) or ends (step 0 and the "
                                "last step: the same final metric for less compute)", flag="--curve-points",
                                choices=CURVE_POINTS, fingerprint="unless-default", group="fine-tuning")
    target: str = setting("baseline", "steps-to-target quality (an oracle stop, for inspection): the baseline's "
                          "final metric on the same task, or target_fraction of this run's best", flag="--target",
                          choices=TARGETS)
    target_fraction: float = setting(0.9, "share of the run's best metric that --target best aims at",
                                     check=in_range(0, 1, "(]"))
    algorithm: dict[str, typing.Any] = setting(help="the chosen algorithm's own hyperparameters (its Config fields; "
                                               "on the command line: --algo-arg KEY=VALUE)", factory=dict, set_by="--algo-arg",
                                               group="meta-training")
    per_algorithm: dict[str, dict[str, typing.Any]] = setting(
        help="settings for one algorithm only, e.g. a preset's tuned `[per_algorithm.multitask] lr = 2e-4`; "
             "[algorithm] and --algo-arg win over them (the run id hashes what the run's algorithm receives)",
        factory=dict, fingerprint="never", group="meta-training")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", flag="--device", check=_device, group="engine")
    engine: str = setting("torch", "engine for training steps (deepspeed: see --zero, --deepspeed-config)",
                          flag="--engine", choices=ENGINES, group="engine")
    deepspeed: dict[str, typing.Any] = setting(help="DeepSpeed settings: zero, precision, config_file (on the "
                                               "command line: --zero, --bf16/--fp16, --deepspeed-config)",
                                               factory=dict, group="engine", set_by="--zero, --bf16/--fp16")

    def adapter_settings(self):
        from .adapters import AdapterSettings

        return AdapterSettings(self.peft, self.lora_r, self.lora_alpha, list(self.peft_targets))

    def recipe_adapter_settings(self):
        """The fresh adapters an adapter recipe puts on each task's start (method "none" otherwise)."""
        from .adapters import AdapterSettings

        return AdapterSettings(ADAPTER_RECIPES.get(self.recipe, "none"), self.lora_r, self.lora_alpha,
                               list(self.peft_targets))

    def validate(self, source: str = "config") -> "RunConfig":
        """Each setting's own check (its declaration), then the rules between settings."""
        def bad(key, why):
            raise SuiteError(f"{source}: {key} {why}")

        for name, (_, entry) in schema(type(self)).items():
            why = check_value(name, getattr(self, name), entry)
            if why:
                bad(name, why)
        if not self.models:
            bad("models", "must name at least one model")
        for key in self.algorithm:  # one route per hyperparameter: a run setting is set as a run setting
            if key in hyperparameters("algorithm") or key == "first_order":
                flag = schema(type(self))[key][1].flag
                bad(f"algorithm.{key}", f"is the run setting {key}: give it once, as the top-level key `{key} = ...` "
                    f"(on the command line {flag}), not in [algorithm] or --algo-arg")
        if self.per_algorithm:
            from metaft.algorithms import list_algorithms

            known = list_algorithms()
            for name in self.per_algorithm:
                if name not in known:
                    bad(f"per_algorithm.{name}", f"is not an algorithm; known: {', '.join(known)}")
        if not 0 <= self.stride <= self.max_length // 2:
            bad("stride", f"must be in [0, max_length/2] = [0, {self.max_length // 2}], got {self.stride}")
        if self.finetune_epochs == 0 and self.ft_steps == 0 and not self.budgets:
            bad("finetune_epochs", "and ft_steps are both 0: nothing would be fine-tuned")
        if len(self.lr_grid()) > 1 and self.n_meta_val < 1:  # (the grid the recipe chooses from, if any)
            bad(self.lr_grid_setting(), "has several learning rates "
                "but n_meta_val is 0: there are no validation tasks to choose on")
        known_types = task_type_names()
        for task_type, steps in self.budgets.items():
            if task_type not in known_types:
                bad(f"budgets.{task_type}", f"is not a task type ({', '.join(known_types)})")
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                bad(f"budgets.{task_type}", f"must be an integer >= 1, got {steps!r}")
        if self.evaluate_on == "meta-val" and self.n_meta_val < 1:
            bad("evaluate_on", "is meta-val but n_meta_val is 0: there are no validation tasks")
        if self.evaluate_on == "meta-val" and len(self.finetune_lr_grid) > 1:
            bad("evaluate_on", "is meta-val: a learning-rate grid would be chosen on the tasks it is scored on; "
                "give one finetune_lr per trial instead")
        if self.recipe != "finetune" and self.eval_mode != "shared":
            bad("recipe", f"is {self.recipe!r}, which is its own fine-tuning; eval_mode {self.eval_mode!r} applies "
                "to the finetune recipe only: drop --eval-mode or use --recipe finetune")
        if self.recipe != "finetune" and self.engine != "torch":
            bad("recipe", f"{self.recipe!r} runs in the torch engine; use --engine torch or --recipe finetune")
        if not self.setfit_lr_grid:
            bad("setfit_lr_grid", "must hold at least one learning rate")
        if self.recipe in ADAPTER_RECIPES and self.peft != "none":
            bad("recipe", f"is {self.recipe!r}, which puts fresh adapters on the start, but peft is {self.peft!r}: the "
                "start already has adapters; use --recipe finetune to fine-tune those, or drop --peft")
        try:
            self.adapter_settings().validate()
        except SuiteError as exc:
            raise SuiteError(f"{source}: {exc}") from None
        for task_type, shape in self.shapes.items():
            if task_type not in known_types:
                bad(f"shapes.{task_type}", f"is not a task type ({', '.join(known_types)})")
            for k, v in shape.items():
                if k not in SHAPE_KEYS:
                    bad(f"shapes.{task_type}.{k}", f"is unknown; valid: {', '.join(SHAPE_KEYS)}")
                if not isinstance(v, int) or v < 1:
                    bad(f"shapes.{task_type}.{k}", f"must be an integer >= 1, got {v!r}")
            if task_type == "classification" and shape.get("ways", 2) < 2:
                bad("shapes.classification.ways", "must be >= 2: a 1-way task scores 1.0 before any fine-tuning")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def algorithm_settings(self) -> dict[str, typing.Any]:
        """The chosen algorithm's own settings: its ``[per_algorithm.<algo>]`` table, then ``[algorithm]``."""
        return {**self.per_algorithm.get(self.algo, {}), **self.algorithm}

    def lr_grid(self) -> list[float]:
        """The learning rates the run's recipe chooses from on validation tasks ([] : none to choose)."""
        from .recipe_registry import get_recipe

        if not get_recipe(self.recipe).uses_lr:
            return []
        if self.recipe in ADAPTER_RECIPES and not self.adapter_lr_grid:
            return [ADAPTER_LRS[ADAPTER_RECIPES[self.recipe]]]
        return list(dict.fromkeys(getattr(self, self.lr_grid_setting())))

    def lr_grid_setting(self) -> str:
        """The setting that holds the run's recipe's learning rates."""
        if self.recipe == "setfit":
            return "setfit_lr_grid"
        return "adapter_lr_grid" if self.recipe in ADAPTER_RECIPES else "finetune_lr_grid"

    def ft_budget(self, task_type: str, support_batches: int) -> int:
        """Fine-tuning steps of one task: --ft-steps, else the task type's budget, else epochs x batches."""
        return self.ft_steps or self.budgets.get(task_type) or self.finetune_epochs * support_batches

    def fingerprint(self) -> str:
        """The run id's hash: the settings that identify the numbers (`settings.fingerprint_dict`),
        with what the run's algorithm receives however it was given (a preset's per-algorithm table
        or --algo-arg; other algorithms' tables do not change this run's identity)."""
        d = fingerprint_dict(self)
        d["algorithm"] = self.algorithm_settings()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


@functools.cache
def _hints(config_cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(config_cls)


def _coerce(key: str, value, source: str, config_cls=None):
    hint = _hints(config_cls or RunConfig)[key]
    origin = typing.get_origin(hint)
    ok = True
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if item is float and isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                             for v in value):
            value = [float(v) for v in value]
        ok = isinstance(value, list) and all(isinstance(v, item) for v in value)
    elif origin is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise SuiteError(f"{source}: {key} must be {getattr(hint, '__name__', str(hint))}, got {value!r}")
    return value


def apply_overrides(config: RunConfig, values: dict, source: str) -> RunConfig:
    aliases = {"model": "models", "seed": "seeds"}
    for key, value in values.items():
        key = aliases.get(key, key)
        known = schema(type(config))
        if key not in known:
            raise SuiteError(f"{source}: unknown key {key!r}; valid keys: {', '.join(sorted(known))}")
        value = _coerce(key, value, source, type(config))
        if key in ("budgets", "algorithm"):  # tables merge key by key: the command line adds to the file
            value = {**getattr(config, key), **value}
        if key in NESTED_TABLES:
            value = _merge_nested(getattr(config, key), value, f"{source}: {key}", NESTED_TABLES[key])
        setattr(config, key, value)
    return config


NESTED_TABLES = {"shapes": "ways/shots/queries", "per_algorithm": "that algorithm's settings"}  # what each holds


def _merge_nested(current: dict, new: dict, where: str, holds: str) -> dict:
    """Tables of tables merge entry by entry (a file's ``[shapes.ner] ways = 3`` keeps the preset's
    shots and queries)."""
    merged = {k: dict(v) for k, v in current.items()}
    for name, table in new.items():
        if not isinstance(table, dict):
            raise SuiteError(f"{where}.{name} must be a table of {holds}")
        merged.setdefault(name, {}).update(table)
    return merged


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:
        raise SuiteError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: "
                         f"{str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: the top level must be a table of keys")
    return data


def task_type_names() -> tuple[str, ...]:
    """The registered task types (built-ins and plugins)."""
    from metaft.tasks.task_types import TASK_TYPES

    return tuple(TASK_TYPES.names())


def hyperparameters(kind: str | None = None) -> tuple[str, ...]:
    """Settings declared as hyperparameters ("algorithm": forwarded, "run": the run's own; None:
    both), in declaration order."""
    return tuple(name for name, (_, entry) in schema(RunConfig).items()
                 if entry.hyperparameter and kind in (None, entry.hyperparameter))


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise SuiteError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("metaft.suite").joinpath("presets", f"{name}.toml").read_text()
    config = apply_overrides(RunConfig(preset=name), tomllib.loads(text), f"preset {name}")
    return config


def resolve_config(preset_name: str = "quick", config_file: str | None = None,
                   overrides: dict | None = None) -> RunConfig:
    config = preset(preset_name)
    if config_file:
        apply_overrides(config, read_config_file(config_file), str(config_file))
    if overrides:
        apply_overrides(config, {k: v for k, v in overrides.items() if v is not None}, "command line")
    return config.validate()

"""Run configuration: a typed dataclass, presets in TOML, overrides from a file and the CLI.

Resolution order: the preset (``quick`` or ``paper``), then ``--config FILE`` (TOML or
YAML), then explicit command-line options. Unknown keys and wrong types are errors
that name the key and the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import SuiteError

PRESETS = ("quick", "study", "paper")
MAX_SEED = 2**32 - 1
PRECISIONS = ("fp32", "bf16", "auto")
MAX_TASKS = 10_000
SHAPE_KEYS = ("ways", "shots", "queries")
EVAL_MODES = ("shared", "own", "hindsight")
RECIPE_NAMES = ("finetune", "linear-probe", "setfit")
# where the query metric is measured during fine-tuning (suite/evaluate.py: eval_schedule): "log2"
# (0, 1, 2, 4, ... and the last step; the curves that costs and the frontier read) or "ends" (step 0
# and the last step only: the same final metric; measured on the 16-task budget test, AVX2-only
# 2-core machine: 1174 s against 1309 s with log2, 10% less)
CURVE_POINTS = ("log2", "ends")
DEFAULT_RECIPE = RECIPE_NAMES[0]  # suite/recipes.py holds each one's definition


# Field metadata that marks a hyperparameter: "algorithm" ones are forwarded to every algorithm
# whose `Config` has a field of that name (shorthands for `[algorithm]`), "run" ones configure the
# run itself. Both kinds are what `suite tune` may search besides `algorithm.<name>`.
FORWARDED = {"hyperparameter": "algorithm"}
RUN_LEVEL = {"hyperparameter": "run"}


@dataclass
class RunConfig:
    """Everything that determines a run's numbers (and nothing that does not)."""

    algo: str = "reptile"
    models: list[str] = field(default_factory=lambda: ["minilm"])
    preset: str = "quick"
    protocol: str = "cross-dataset"
    datasets: list[str] = field(default_factory=list)  # empty: the protocol's defaults
    seeds: list[int] = field(default_factory=lambda: [0])
    n_meta_train: int = 24
    n_meta_test: int = 12
    n_meta_val: int = 0  # validation tasks (held-out parts of the meta-training datasets)
    val_fraction: float = 0.2
    shapes: dict[str, dict[str, int]] = field(default_factory=dict)
    max_length: int = 128
    stride: int = 32
    batch_size: int = 16
    eval_batch_size: int = 32
    meta_epochs: int = 1
    meta_batch_size: int = field(default=2, metadata=FORWARDED)
    inner_steps: int = field(default=3, metadata=FORWARDED)
    inner_lr: float = field(default=1e-3, metadata=FORWARDED)
    outer_lr: float = field(default=1e-4, metadata=FORWARDED)
    first_order: bool = False
    finetune_lr: float = field(default=5e-5, metadata=FORWARDED)
    finetune_lr_grid: list[float] = field(default_factory=list)  # chosen per task type on validation tasks
    finetune_epochs: int = 3
    ft_steps: int = 0  # > 0: this many steps for every task type (overrides budgets and epochs)
    budgets: dict[str, int] = field(default_factory=dict)  # fine-tuning steps per task type
    # "shared" (identical for all), "own" (the algorithm's own adaptation) or "hindsight" (oracle bound of a
    # selecting algorithm: every candidate start, best on the query set; never ranked)
    eval_mode: str = "shared"
    # how each task is fine-tuned from the algorithm's start (suite/recipes.py): "finetune" (the loop
    # above), "linear-probe" or "setfit"; part of the protocol, so recipes pair only within a recipe
    recipe: str = "finetune"
    setfit_iterations: int = 20  # SetFit's pair iterations (0: its "oversampling" default)
    setfit_lr_grid: list[float] = field(default_factory=lambda: [2e-5])  # SetFit's body lr; > 1: chosen on val
    evaluate_on: str = "meta-test"  # "meta-val": fine-tune and score the validation tasks (for tuning)
    pooling: str = "auto"  # sentence vector: auto (the model's own), mean, first or last token
    head_init: str = field(default="proto", metadata=RUN_LEVEL)
    peft: str = "none"  # "lora" or "ia3": adapters on a frozen backbone (suite/adapters.py)
    lora_r: int = 8
    lora_alpha: int = 16
    peft_targets: list[str] = field(default_factory=list)  # empty: peft's default modules per architecture
    freeze_embeddings: bool = False
    gradient_checkpointing: bool = False
    # "bf16": the encoder under autocast (fp32 weights, optimizer state, heads, losses); part of the
    # protocol, so bf16 and fp32 rows never pair. "auto": bf16 where the device has it natively, else
    # fp32 (resolved by the runner before the run id is made)
    precision: str = "fp32"
    curve_points: str = "log2"
    target: str = "baseline"  # "baseline" or "best"
    target_fraction: float = 0.9
    algorithm: dict[str, typing.Any] = field(default_factory=dict)  # extra algorithm hyperparameters
    # settings for one algorithm only, e.g. a preset's tuned `[per_algorithm.multitask] lr = 2e-4`;
    # `[algorithm]` and --algo-arg win over them
    per_algorithm: dict[str, dict[str, typing.Any]] = field(default_factory=dict)
    device: str = "auto"
    engine: str = "torch"
    deepspeed: dict[str, typing.Any] = field(default_factory=dict)

    def adapter_settings(self):
        from .adapters import AdapterSettings

        return AdapterSettings(self.peft, self.lora_r, self.lora_alpha, list(self.peft_targets))

    def validate(self, source: str = "config") -> "RunConfig":
        def bad(key, why):
            raise SuiteError(f"{source}: {key} {why}")

        if self.preset not in PRESETS:
            bad("preset", f"must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if not self.models:
            bad("models", "must name at least one model")
        if self.per_algorithm:
            from metaft.algorithms import list_algorithms

            known = list_algorithms()
            for name in self.per_algorithm:
                if name not in known:
                    bad(f"per_algorithm.{name}", f"is not an algorithm; known: {', '.join(known)}")
        if not self.seeds:
            bad("seeds", "must hold at least one seed")
        for seed in self.seeds:
            if not 0 <= seed <= MAX_SEED:
                bad("seeds", f"must be integers in [0, {MAX_SEED}] (numpy's seed range), got {seed}")
        for key in ("n_meta_train", "n_meta_test", "n_meta_val"):
            if getattr(self, key) > MAX_TASKS:
                bad(key, f"must be at most {MAX_TASKS:,} tasks per side (episode manifests grow with it), "
                    f"got {getattr(self, key):,}")
        for key in ("n_meta_test", "max_length", "batch_size", "eval_batch_size", "meta_batch_size"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("n_meta_train", "n_meta_val", "meta_epochs", "inner_steps", "finetune_epochs", "ft_steps"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("inner_lr", "outer_lr", "finetune_lr"):
            if not 0 < getattr(self, key) < math.inf:
                bad(key, f"must be a finite number > 0, got {getattr(self, key)}")
        if not 0 <= self.stride <= self.max_length // 2:
            bad("stride", f"must be in [0, max_length/2] = [0, {self.max_length // 2}], got {self.stride}")
        if self.target not in ("baseline", "best"):
            bad("target", f"must be 'baseline' or 'best', got {self.target!r}")
        if not 0 < self.target_fraction <= 1:
            bad("target_fraction", f"must be in (0, 1], got {self.target_fraction}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad("device", f"must be auto, cpu or cuda, got {self.device!r}")
        if self.curve_points not in CURVE_POINTS:
            bad("curve_points", f"must be one of {', '.join(CURVE_POINTS)}, got {self.curve_points!r}")
        if self.precision not in PRECISIONS:
            bad("precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.engine not in ("torch", "deepspeed"):
            bad("engine", f"must be torch or deepspeed, got {self.engine!r}")
        if self.head_init not in ("proto", "zero", "random"):
            bad("head_init", f"must be proto, zero or random, got {self.head_init!r}")
        if self.finetune_epochs == 0 and self.ft_steps == 0 and not self.budgets:
            bad("finetune_epochs", "and ft_steps are both 0: nothing would be fine-tuned")
        if not 0 < self.val_fraction < 1:
            bad("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if any(not (isinstance(v, (int, float)) and 0 < v < math.inf) for v in self.finetune_lr_grid):
            bad("finetune_lr_grid", f"must hold finite positive learning rates, got {self.finetune_lr_grid}")
        if len(self.finetune_lr_grid) > 1 and self.n_meta_val < 1 and self.recipe == "finetune":
            # (the other recipes choose from their own grid, or have no lr: this grid is unused)
            bad("finetune_lr_grid", "has several learning rates but n_meta_val is 0: there are no validation "
                "tasks to choose on")
        known_types = task_type_names()
        for task_type, steps in self.budgets.items():
            if task_type not in known_types:
                bad(f"budgets.{task_type}", f"is not a task type ({', '.join(known_types)})")
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                bad(f"budgets.{task_type}", f"must be an integer >= 1, got {steps!r}")
        if self.evaluate_on not in ("meta-test", "meta-val"):
            bad("evaluate_on", f"must be meta-test or meta-val, got {self.evaluate_on!r}")
        if self.evaluate_on == "meta-val" and self.n_meta_val < 1:
            bad("evaluate_on", "is meta-val but n_meta_val is 0: there are no validation tasks")
        if self.evaluate_on == "meta-val" and len(self.finetune_lr_grid) > 1:
            bad("evaluate_on", "is meta-val: a learning-rate grid would be chosen on the tasks it is scored on; "
                "give one finetune_lr per trial instead")
        if self.eval_mode not in EVAL_MODES:
            bad("eval_mode", f"must be one of {', '.join(EVAL_MODES)}, got {self.eval_mode!r}")
        if self.recipe not in RECIPE_NAMES:
            bad("recipe", f"must be one of {', '.join(RECIPE_NAMES)}, got {self.recipe!r}")
        if self.recipe != "finetune" and self.eval_mode != "shared":
            bad("recipe", f"is {self.recipe!r}, which is its own fine-tuning; eval_mode {self.eval_mode!r} applies "
                "to the finetune recipe only: drop --eval-mode or use --recipe finetune")
        if self.recipe != "finetune" and self.engine != "torch":
            bad("recipe", f"{self.recipe!r} runs in the torch engine; use --engine torch or --recipe finetune")
        if self.setfit_iterations < 0:
            bad("setfit_iterations", f"must be >= 0 (0: SetFit's oversampling default), got {self.setfit_iterations}")
        if not self.setfit_lr_grid or any(not (isinstance(v, (int, float)) and 0 < v < math.inf)
                                          for v in self.setfit_lr_grid):
            bad("setfit_lr_grid", f"must hold finite positive learning rates, got {self.setfit_lr_grid}")
        if self.recipe == "setfit" and len(set(self.setfit_lr_grid)) > 1 and self.n_meta_val < 1:
            bad("setfit_lr_grid", "has several learning rates but n_meta_val is 0: there are no validation "
                "tasks to choose on")
        try:
            self.adapter_settings().validate()
        except SuiteError as exc:
            raise SuiteError(f"{source}: {exc}") from None
        if self.pooling not in ("auto", "mean", "mean-normalized", "first", "last"):
            bad("pooling", f"must be auto, mean, mean-normalized, first or last, got {self.pooling!r}")
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
        if self.recipe == "setfit":
            return list(dict.fromkeys(self.setfit_lr_grid))
        if self.recipe == "linear-probe":
            return []
        return list(dict.fromkeys(self.finetune_lr_grid))

    def ft_budget(self, task_type: str, support_batches: int) -> int:
        """Fine-tuning steps of one task: --ft-steps, else the task type's budget, else epochs x batches."""
        return self.ft_steps or self.budgets.get(task_type) or self.finetune_epochs * support_batches

    def fingerprint(self) -> str:
        d = self.to_dict()
        # what the run's algorithm gets, however it was given (a preset's per-algorithm table or
        # --algo-arg); other algorithms' tables do not change this run's identity
        d["algorithm"] = self.algorithm_settings()
        d.pop("per_algorithm")
        if d.get("peft") == "none":  # without adapters, runs keep the ids they had before adapters existed
            for key in ("peft", "lora_r", "lora_alpha", "peft_targets"):
                d.pop(key, None)
        if d.get("precision") == "fp32":  # likewise for runs written before precision was a setting
            d.pop("precision")
        if d.get("curve_points") == "log2":  # and before the evaluation points were one
            d.pop("curve_points")
        if d.get("recipe") == "finetune":  # and for runs written before recipes were a setting
            for key in ("recipe", "setfit_iterations", "setfit_lr_grid"):
                d.pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_HINTS = typing.get_type_hints(RunConfig)


def _coerce(key: str, value, source: str):
    hint = _HINTS[key]
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
        if key not in _FIELDS:
            raise SuiteError(f"{source}: unknown key {key!r}; valid keys: {', '.join(sorted(_FIELDS))}")
        value = _coerce(key, value, source)
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
    """RunConfig fields marked as hyperparameters ("algorithm": forwarded, "run": the run's own;
    None: both), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(RunConfig)
                 if f.metadata.get("hyperparameter") and kind in (None, f.metadata["hyperparameter"]))


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

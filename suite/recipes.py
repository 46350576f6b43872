"""Recipes: how a task is fine-tuned once its start (the algorithm's init) is chosen.

Where a task starts and how it is then fine-tuned are two choices; a run names both
(``--algo reptile --recipe setfit``). Recipes, and the task types they serve:

- ``finetune`` (all task types): the suite's shared Adam fine-tuning on the support set
  (``eval_mode = "shared"``) or the algorithm's own adaptation (``"own"``); the runner's loop.
- ``linear-probe`` (classification): the start's encoder frozen; a scikit-learn
  ``LogisticRegression()`` (its defaults, as SetFit's head) fitted on the support set's
  sentence vectors (the encoder's own pooling and normalisation), scored on the query set.
- ``setfit`` (classification): SetFit 1.2's recipe (Tunstall et al. 2022) in the suite's
  metered loop: contrastive pairs drawn from the support set exactly as ``setfit``'s
  ``ContrastiveDataset`` draws them (:func:`setfit_pairs`), a cosine-similarity MSE loss on the
  encoder for ``ceil(pairs / batch_size)`` steps (one epoch; 20 iterations x 32 examples = 1,280
  pairs = 80 steps at batch 16), AdamW with SetFit's defaults (weight decay 0.01 on matrices, 10%
  linear warm-up then linear decay, gradient norm clipped at 1), then the logistic head. The curve
  is read at the log-spaced steps like every recipe, the head refitted on the support set at each
  point (never on queries), so the curve's step 0 is the linear probe of the start.
- ``finetune-lora`` / ``finetune-ia3`` (all task types): fresh adapters on a copy of the start,
  its backbone frozen, then the shared loop on the adapters and heads for ``adapter_steps`` (their
  own budget: fresh adapters learn slower than the full model) at the lr from ``adapter_lr_grid``.
  Not ``--peft``, which puts the adapters on the backbone from meta-training on.

NER and QA have no sentence-level head for a logistic regression to replace, so the two
sentence-encoder recipes refuse them (:func:`check_serves`).

Cost: the head's support-set forward pass and fit are a fixed cost per task, ``head_flops``
(2 x forward parameters per support token; the fit's own arithmetic, a few thousand
multiply-adds per lbfgs iteration, is left out) and ``head_seconds``, included in ``ft_flops``
and ``ft_seconds``; the compute to reach step k is ``head_flops + k x (ft_flops - head_flops) /
ft_steps`` (:func:`metaft.leaderboard.costs.compute_at`). Query-set evaluation is not metered,
as for every recipe. Why the loop is the suite's and not ``setfit.Trainer``: the curve, the
meter and the per-task dropout stream come from one place for every recipe; parity with the
package is measured by ``benchmarks/bench_setfit_parity.py`` and tested.
"""
from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from metaft.algorithms.base import check_finite
from metaft.algorithms.transformer_learner import episode_loss

from .evaluate import eval_schedule, evaluate
from .flops import flops_per_token
from .foundation.errors import ConfigError
from .metering import Measurement, Meter
from .recipe_registry import RECIPES, Recipe, check_serves, get_recipe, register_recipe

__all__ = ["RECIPES", "Recipe", "RecipeResult", "RecipeTask", "check_serves", "get_recipe", "register_recipe"]

if TYPE_CHECKING:
    from metaft.algorithms import Algorithm
    from metaft.algorithms.transformer_learner import EpisodicTransformer
    from metaft.tasks.metrics import Metric

    from .config import RunConfig


# SetFit 1.2's documented TrainingArguments defaults (setfit/training_args.py)
SETFIT_ITERATIONS = 20
SETFIT_LR = 2e-5
SETFIT_WEIGHT_DECAY = 0.01  # `l2_weight`
SETFIT_WARMUP = 0.1  # `warmup_proportion`
SETFIT_MAX_GRAD_NORM = 1.0
SETFIT_PAIR_SEED = 42  # setfit.sampler.shuffle_combinations: np.random.RandomState(seed=42), fixed


# ---------------------------------------------------------------------------- SetFit's pairs
def setfit_pairs(labels: Sequence[Any], iterations: int = SETFIT_ITERATIONS) -> list[tuple[int, int, float]]:
    """(i, j, target) index pairs in SetFit 1.2's order: every pair i <= j (with replacement) in a
    permutation by a fixed RandomState(42), split into positives (same label) and negatives,
    each cycled to ``iterations x n`` pairs (``iterations = 0``: SetFit's "oversampling" default,
    both to the larger count), then positive and negative alternately."""
    n = len(labels)
    idx = np.stack(np.triu_indices(n, 0), axis=-1)
    pos: list[tuple[int, int, float]] = []
    neg: list[tuple[int, int, float]] = []
    for k in np.random.RandomState(seed=SETFIT_PAIR_SEED).permutation(len(idx)):
        i, j = (int(v) for v in idx[k])
        (pos if labels[i] == labels[j] else neg).append((i, j, 1.0 if labels[i] == labels[j] else 0.0))
    if not pos or not neg:
        raise ConfigError("setfit needs a support set with at least two classes (it has positive and negative "
                          "pairs only then)")
    per_side = iterations * n if iterations > 0 else max(len(pos), len(neg))
    cycled_pos = [pos[k % len(pos)] for k in range(per_side)]
    cycled_neg = [neg[k % len(neg)] for k in range(per_side)]
    return [p for both in zip(cycled_pos, cycled_neg) for p in both]


def linear_schedule(step: int, total: int, warmup_fraction: float = SETFIT_WARMUP) -> float:
    """transformers' get_linear_schedule_with_warmup factor, with warm-up ceil(fraction x total)."""
    warmup = math.ceil(total * warmup_fraction)
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


# ---------------------------------------------------------------------------- the head
@torch.no_grad()
def sentence_vectors(model: EpisodicTransformer, batches: Sequence[dict]) -> np.ndarray:
    """The encoder's own sentence vectors (its pooling and normalisation), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.features(b).float() for b in batches]).cpu().numpy()
    finally:
        model.train(was_training)


def fit_head(features: np.ndarray, labels: np.ndarray):
    """scikit-learn's LogisticRegression with its defaults (SetFit's head, lbfgs, C = 1)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        raise ConfigError("a logistic-regression head needs at least two classes in the support set")
    return LogisticRegression().fit(features, labels)


@dataclass
class HeadCost:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    tokens: int = 0
    flops: float = 0.0


@dataclass
class RecipeResult:
    """One task's adaptation: the curve of (step, metric, metered seconds, exact match) at the
    evaluation steps, its measurement (head included), the step budget and the head's cost."""

    curve: list[tuple[int, float, float, float | None]]
    measurement: Measurement
    steps: int
    head: HeadCost = field(default_factory=HeadCost)


def _labels(batches: Sequence[dict]) -> np.ndarray:
    return torch.cat([b["labels"] for b in batches]).cpu().numpy()


def probe(model: EpisodicTransformer, support: Sequence[dict], query: Sequence[dict], metric, device: torch.device
          ) -> tuple[dict, HeadCost]:
    """Fit the head on the support set (metered: forward pass, fit) and score the query set (not)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    head = fit_head(sentence_vectors(model, support), _labels(support))
    sync()
    tokens = sum(int(b["attention_mask"].sum()) for b in support)
    cost = HeadCost(time.perf_counter() - wall, time.process_time() - cpu, tokens,
                    flops_per_token(_encoder(model), []) * tokens)
    predictions = head.predict(sentence_vectors(model, query)).tolist()
    return {"exact_match": None, **metric.compute(predictions, _labels(query).tolist())}, cost


def _encoder(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def _with_head(measurement: Measurement, head: HeadCost) -> Measurement:
    on_gpu = measurement.gpu_seconds > 0
    return measurement.plus(Measurement(wall_seconds=head.seconds, cpu_seconds=head.cpu_seconds,
                                        gpu_seconds=head.seconds if on_gpu else 0.0,
                                        gpu_hours=head.seconds / 3600 if on_gpu else 0.0,
                                        tokens=head.tokens, flops=head.flops))


def linear_probe(start: EpisodicTransformer, support: Sequence[dict], query: Sequence[dict], metric,
                 device: torch.device) -> RecipeResult:
    scores, head = probe(start, support, query, metric, device)  # nothing is trained: the head is the cost
    return RecipeResult([(0, scores["metric"], head.seconds, None)], _with_head(Measurement(), head), 0, head)


# ---------------------------------------------------------------------------- SetFit's loop
@dataclass(frozen=True)
class SetFitSettings:
    iterations: int = SETFIT_ITERATIONS
    lr: float = SETFIT_LR
    batch_size: int = 16
    weight_decay: float = SETFIT_WEIGHT_DECAY
    warmup: float = SETFIT_WARMUP
    max_grad_norm: float = SETFIT_MAX_GRAD_NORM
    curve_points: str = "log2"  # RunConfig.curve_points


def setfit(start: EpisodicTransformer, examples: list[dict], encode, support: Sequence[dict], query: Sequence[dict],
           metric, device: torch.device, settings: SetFitSettings, seed: int) -> RecipeResult:
    """SetFit on one task from ``start`` (trained in place: pass a copy). ``examples`` are the
    support examples in the episode's order, ``encode(examples)`` a batch of them on the device."""
    labels = [ex["label"] for ex in examples]
    pairs = setfit_pairs(labels, settings.iterations)
    steps = math.ceil(len(pairs) / settings.batch_size)
    schedule = set(eval_schedule(steps, settings.curve_points))
    encoder = _encoder(start)
    trained = [p for p in encoder.parameters() if p.requires_grad]
    if not trained:
        raise ConfigError("setfit trains the encoder, but none of its parameters is trainable")
    groups = [{"params": [p for p in trained if p.ndim >= 2], "weight_decay": settings.weight_decay},
              {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: linear_schedule(k, steps, settings.warmup))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    curve: list[tuple[int, float, float, float | None]] = []
    head = HeadCost()
    meter = Meter(device, flops_per_token(encoder, trained))

    def point(k: int) -> None:
        nonlocal head
        with meter.pause():
            scores, head = probe(start, support, query, metric, device)
        curve.append((k, scores["metric"], meter.elapsed() + head.seconds, None))

    start.train()
    with meter:
        point(0)
        for k in range(1, steps + 1):
            chosen = [pairs[i] for i in order[(k - 1) * settings.batch_size: k * settings.batch_size]]
            left = encode([examples[i] for i, _, _ in chosen])
            right = encode([examples[j] for _, j, _ in chosen])
            meter.tokens += int(left["attention_mask"].sum()) + int(right["attention_mask"].sum())
            target = torch.tensor([t for _, _, t in chosen], device=device)
            loss = F.mse_loss(F.cosine_similarity(start.features(left), start.features(right)), target)
            check_finite(loss, f"in setfit step {k}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if k in schedule:
                point(k)
    return RecipeResult(curve, _with_head(meter.result, head), steps, head)


# ---------------------------------------------------------------------------- one task, any recipe
@dataclass
class RecipeTask:
    """What a recipe receives for one meta-test (or validation) task. The runner seeded torch with
    the task's own seed (``seed``) before building it, so a task's result does not depend on the
    tasks before it."""

    start: Callable[[], nn.Module]  # the algorithm's start for this task: a fresh model on each call
    learner: EpisodicTransformer  # the meta-learned model (the finetune recipe adapts from it)
    algo: Algorithm
    examples: list[dict]  # the support examples, in the episode's order
    support: list[dict]  # the support set as batches on the device
    query: list[dict]  # the query set as evaluation batches on the device
    encode: Callable[[list[dict]], dict]  # examples -> one batch on the device
    label_names: Sequence[str]
    metric: Metric
    device: torch.device
    lr: float  # the learning rate (chosen on validation tasks when the run has a grid)
    steps: int  # the task type's step budget (recipes with a budget of their own ignore it)
    mode: str  # "shared" or "own" (the finetune recipe)
    seed: int
    settings: RunConfig
    step_factory: Callable | None = None  # an engine's update step (e.g. DeepSpeed), finetune only


def _shared_loop(task: RecipeTask, steps: int, run: Callable[[Callable, Callable], object]) -> RecipeResult:
    """The shared loop's meter and curve around ``run(loss_fn, on_step)``, which fine-tunes for
    ``steps``: the query metric read at the evaluation steps, the FLOPs counted for what the
    adaptation updates (known at step 0, once the episode's head exists)."""
    schedule = set(eval_schedule(steps, task.settings.curve_points))
    meter = Meter(task.device)
    curve: list[tuple[int, float, float, float | None]] = []

    def on_step(k, model, loss):
        if k == 0:
            groups = task.algo.own_adaptation(model) if task.mode == "own" else None
            updated = [p for g in groups for p in g["params"]] if groups else \
                [p for p in model.parameters() if p.requires_grad]
            meter.flops_per_token = flops_per_token(model, updated)
        if k in schedule:
            with meter.pause():
                scores = evaluate(model, task.query, task.label_names, task.metric)
            curve.append((k, scores["metric"], meter.elapsed(), scores["exact_match"]))

    with meter:
        run(meter.count_loss(episode_loss), on_step)
    return RecipeResult(curve, meter.result, steps)


def finetune_task(task: RecipeTask) -> RecipeResult:
    """The shared fine-tuning (or the algorithm's own adaptation with ``mode = "own"``) for the
    task type's budget, the query metric read at the evaluation steps."""
    return _shared_loop(task, task.steps, lambda loss_fn, on_step: task.algo.adapt(
        task.learner, task.support, loss_fn, steps=task.steps, lr=task.lr, on_step=on_step, mode=task.mode,
        step_factory=task.step_factory))


def adapter_task(task: RecipeTask) -> RecipeResult:
    """finetune-lora / finetune-ia3: fresh adapters (peft's init: LoRA's B = 0 and IA3's scales = 1,
    so step 0 computes what the start computes) on a copy of the start, its backbone frozen, then
    the shared loop on the adapters and heads for ``adapter_steps`` (the adapters' own budget) at
    the lr chosen from ``adapter_lr_grid``. The runner seeded torch with the task's seed, so LoRA's
    random A is the task's own."""
    from metaft.algorithms.base import begin_episode
    from metaft.algorithms.finetune import finetune

    from .adapters import add_adapters

    cfg = task.settings
    optimizer = getattr(task.algo.config, "finetune_optimizer", "adam")  # the shared loop's

    def run(loss_fn, on_step):  # inside the meter, as the finetune recipe's copy of its start
        model = task.start()
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise ConfigError(f"recipe {cfg.recipe!r} puts adapters on a transformer backbone; this start has none")
        model.backbone = add_adapters(backbone, cfg.recipe_adapter_settings())
        begin_episode(model, task.support)
        finetune(model, task.support, loss_fn, cfg.adapter_steps, lr=task.lr, optimizer=optimizer, on_step=on_step)

    return _shared_loop(task, cfg.adapter_steps, run)


def linear_probe_task(task: RecipeTask) -> RecipeResult:
    return linear_probe(typing.cast("EpisodicTransformer", task.start()), task.support, task.query, task.metric,
                        task.device)


def setfit_task(task: RecipeTask) -> RecipeResult:
    cfg = task.settings
    settings = SetFitSettings(iterations=cfg.setfit_iterations, lr=task.lr, batch_size=cfg.batch_size,
                              curve_points=cfg.curve_points)
    return setfit(typing.cast("EpisodicTransformer", task.start()), task.examples, task.encode, task.support,
                  task.query, task.metric, task.device, settings, task.seed)

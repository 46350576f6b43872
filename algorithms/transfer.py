"""Reuse of past fine-tuning without meta-gradients: merged-model starts and intermediate tasks.

Both start from the same step: fine-tune one copy of the start per meta-training source dataset
(:func:`finetune_per_source`, the shared :func:`~algorithms.finetune.finetune` procedure on that
source's meta-training episodes, one episode's support and query sets per step, Adam, a
declared budget). Then

* ``merge`` combines the copies' weight changes ("task vectors") into one new start with
  ``peft.utils.merge_utils`` (average, task arithmetic, TIES, DARE); ``rounds > 1`` repeats it
  from the merged start (ColD Fusion). Don-Yehiya et al. 2022; Gueta et al. 2023; Ilharco et
  al. 2023; Yadav et al. 2023.
* ``intermediate`` keeps the copies and, for each new task, starts from the copy whose source
  looks most like the task's support set (cosine similarity of mean-pooled, L2-normalised
  encoder embeddings of the support texts and each source's centroid, both under the start
  weights). Pruksachatkun et al. 2020; Vu et al. 2020; Poth et al. 2021.

Heads. The classification and NER heads are rebuilt per episode from class prototypes
(:class:`~algorithms.transformer_learner.EpisodicTransformer`), so no per-dataset head is
learned and none is merged. A shared parameter that a source never changed (e.g. the QA head
when only one source is QA) has no task vector from that source: it is merged over the
sources that changed it, so a head trained by one source keeps that source's value instead of
being diluted by the others' zeros.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from metaft.suite.foundation.errors import ConfigError

from .base import Algorithm, AlgorithmConfig, Episode, LossFn, MetaTrainStats, begin_episode, meta_parameters
from .finetune import StepFactory, as_batches, finetune
from .registry import register_algorithm

MERGE_METHODS = ("average", "task_arithmetic", "ties", "dare_linear", "dare_ties")


# ---------------------------------------------------------------------------------------------- shared step
@dataclass
class SourceConfig(AlgorithmConfig):
    """How each source is fine-tuned: ``source_lr`` (``source_optimizer``, Adam by default) for ``source_steps`` steps of one
    episode each (0: one pass over the source's episodes, so every algorithm sees the same
    meta-training examples once)."""

    source_lr: float = 5e-5
    source_steps: int = 0
    source_optimizer: str = "adam"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source_optimizer not in ("adam", "sgd"):
            raise ConfigError(f"source_optimizer must be 'adam' or 'sgd', got {self.source_optimizer!r}")


def episode_objective(loss_fn: LossFn) -> Callable[[nn.Module, Episode], torch.Tensor]:
    """One fine-tuning step's loss on a whole episode: its head is built from the support set,
    the loss is the mean over its support and query batches (as ``multitask``)."""
    def objective(model: nn.Module, episode: Episode) -> torch.Tensor:
        support = as_batches(episode.support)
        begin_episode(model, support)
        return torch.stack([loss_fn(model, b) for b in support + as_batches(episode.query)]).mean()
    return objective


def group_by_source(episodes: Iterable[Episode]) -> dict[str, list[Episode]]:
    """Episodes per source dataset, in first-seen order; a missing source is an error, since
    per-source methods would silently merge unrelated data."""
    groups: dict[str, list[Episode]] = {}
    for ep in episodes:
        if ep.source is None:
            raise ConfigError("this algorithm fine-tunes per source dataset, but an episode has no source; "
                             "build episodes with Episode(support, query, source=<dataset>)")
        groups.setdefault(str(ep.source), []).append(ep)
    return groups


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters the outer loop would update (the start's weights)."""
    wanted = {id(p) for p in meta_parameters(model)}
    return {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in wanted}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def finetune_per_source(model: nn.Module, groups: dict[str, list[Episode]], loss_fn: LossFn, *, steps: int,
                        lr: float, optimizer: str = "adam", step_factory: StepFactory | None = None,
                        on_step: Callable[[str, int, float], None] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Each source's fine-tuned weights (trainable parameters only), every copy from ``model``'s
    current weights with a fresh optimizer; ``model`` itself is left unchanged."""
    objective = episode_objective(loss_fn)
    results = {}
    for source, episodes in groups.items():
        copy_ = copy.deepcopy(model)
        n = steps or len(episodes)

        def report(k, _model, loss, source=source):  # finetune itself refuses a non-finite loss
            if loss is not None and on_step is not None:
                on_step(source, k, loss)

        finetune(copy_, episodes, objective, n, lr=lr, optimizer=optimizer, params=meta_parameters(copy_),
                 on_step=report, step_factory=step_factory)
        results[source] = trainable_state(copy_)
        del copy_
    return results


# ---------------------------------------------------------------------------------------------- merge
def merge_task_vectors(vectors: Sequence[torch.Tensor], method: str, *, scale: float = 1.0,
                       density: float = 0.2) -> torch.Tensor:
    """One merged weight change from several, by ``peft.utils.merge_utils``. ``average`` is the
    mean; ``task_arithmetic`` is ``scale`` x the mean (Ilharco et al.'s sum with lambda = scale /
    n); ``ties``/``dare_*`` keep ``density`` of each vector and scale the result by ``scale``."""
    from peft.utils import merge_utils

    n = len(vectors)
    if method == "average":
        weights = torch.full((n,), 1.0 / n)
        return merge_utils.task_arithmetic(list(vectors), weights.to(vectors[0]))
    if method == "task_arithmetic":
        return merge_utils.task_arithmetic(list(vectors), torch.full((n,), scale / n).to(vectors[0]))
    weights = torch.full((n,), float(scale)).to(vectors[0])
    if method == "ties":  # disjoint mean of the trimmed, sign-elected vectors
        return merge_utils.ties(list(vectors), weights, density)
    if method == "dare_ties":
        return merge_utils.dare_ties(list(vectors), weights, density)
    if method == "dare_linear":  # random drop-and-rescale, then the (weighted) mean
        return merge_utils.dare_linear(list(vectors), weights / n, density)
    raise ConfigError(f"unknown merge method {method!r}; choose one of {', '.join(MERGE_METHODS)}")


def merge_states(start: dict[str, torch.Tensor], finetuned: Sequence[dict[str, torch.Tensor]], method: str, *,
                 scale: float = 1.0, density: float = 0.2) -> dict[str, torch.Tensor]:
    """The merged start: per parameter, start + merge(deltas of the sources that changed it)."""
    merged = {}
    for name, value in start.items():
        deltas = [state[name] - value for state in finetuned]
        changed = [d for d in deltas if bool(d.any())]
        merged[name] = value + merge_task_vectors(changed, method, scale=scale, density=density) if changed \
            else value.clone()
    return merged


@dataclass
class MergeConfig(SourceConfig):
    method: str = "average"
    scale: float = 1.0  # task_arithmetic / ties / dare: multiplies the merged change; average is scale 1
    density: float = 0.2  # ties / dare: fraction of each task vector kept (TIES paper: top 20%)
    rounds: int = 1  # > 1: ColD Fusion, the merged model is the next round's start

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in MERGE_METHODS:
            raise ConfigError(f"merge method must be one of {', '.join(MERGE_METHODS)}, got {self.method!r}")
        if self.method == "average" and self.scale != 1.0:
            raise ConfigError("scale does not apply to method 'average' (it is the mean); "
                             "use method 'task_arithmetic' to scale the mean change")
        if not 0 < self.density <= 1:
            raise ConfigError(f"density must be in (0, 1], got {self.density}")
        if not (isinstance(self.rounds, int) and self.rounds >= 1):
            raise ConfigError(f"rounds must be an integer >= 1, got {self.rounds!r}")


class SourceAlgorithm(Algorithm):
    """Meta-training is a set of independent per-source fine-tunings: no outer optimizer. A
    runner hands them ``step_factory`` (e.g. DeepSpeed) rather than an outer step."""

    Config = SourceConfig
    uses_outer_step = False

    def meta_steps(self, n_episodes: int, meta_batch_size: int, n_sources: int = 1) -> int:
        steps = self.config.source_steps
        return (steps * n_sources if steps else n_episodes) * getattr(self.config, "rounds", 1)

    def _finetune_sources(self, model, groups, loss_fn, stats: MetaTrainStats, callbacks):
        def on_step(source, k, loss):
            stats.steps += 1
            stats.episodes += 1
            stats.losses.append(loss)
            for cb in callbacks:
                cb({"step": stats.steps, "loss": loss, "episodes": stats.episodes, "source": source})

        return finetune_per_source(model, groups, loss_fn, steps=self.config.source_steps, lr=self.config.source_lr,
                                   optimizer=self.config.source_optimizer, step_factory=self.step_factory, on_step=on_step)


@register_algorithm("merge")
class Merge(SourceAlgorithm):
    """Merged-model start: fine-tune one copy per source, combine their weight changes."""

    Config = MergeConfig

    def meta_train(self, model: nn.Module, episodes: Iterable[Episode], loss_fn: LossFn, steps: int | None = None,
                   *, meta_batch_size: int | None = None, callbacks: Sequence[Callable[[dict], None]] = (),
                   engine: Any = None) -> MetaTrainStats:
        """``steps`` does not apply (each source's budget is ``source_steps``); ``engine`` is not
        used (there is no outer update); set ``step_factory`` to change what applies updates."""
        stats = MetaTrainStats()
        groups = group_by_source(episodes)
        if not groups:
            return stats
        for _ in range(self.config.rounds):
            start = trainable_state(model)
            finetuned = self._finetune_sources(model, groups, loss_fn, stats, callbacks)
            load_trainable(model, merge_states(start, list(finetuned.values()), self.config.method,
                                               scale=self.config.scale, density=self.config.density))
        self.sources = list(groups)
        return stats

    def state_dict(self) -> dict:
        return {"sources": list(getattr(self, "sources", []))}

    def load_state_dict(self, state: dict) -> None:
        self.sources = list(state.get("sources", []))


# ---------------------------------------------------------------------------------------------- intermediate
def support_embedding(model: nn.Module, batches: Sequence) -> torch.Tensor:
    """Mean of the L2-normalised sentence embeddings of ``batches`` (the model's ``embed`` hook)."""
    embed = getattr(model, "embed", None)
    if not callable(embed):
        raise ConfigError(f"{type(model).__name__} has no embed(batch) hook; source selection needs sentence "
                         f"embeddings (EpisodicTransformer provides them)")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        vectors = torch.cat([F.normalize(embed(b).float(), dim=-1) for b in batches])
    model.train(was_training)
    return vectors.mean(0)


@dataclass
class IntermediateConfig(SourceConfig):
    selection_episodes: int = 8  # per source: support sets whose embeddings make its centroid

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.selection_episodes, int) and self.selection_episodes >= 1):
            raise ConfigError(f"selection_episodes must be an integer >= 1, got {self.selection_episodes!r}")


@register_algorithm("intermediate")
class Intermediate(SourceAlgorithm):
    """Intermediate-task transfer: per task, start from the fine-tuned copy of the most similar
    source (chosen from the support set alone), then the shared fine-tuning."""

    Config = IntermediateConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.sources: dict[str, dict[str, torch.Tensor]] = {}  # fine-tuned weights per source (the cache)
        self.centroids: dict[str, torch.Tensor] = {}
        self._forced: str | None = None  # set by forcing_source (a runner's hindsight mode)
        self.last_choice: dict | None = None

    def meta_train(self, model: nn.Module, episodes: Iterable[Episode], loss_fn: LossFn, steps: int | None = None,
                   *, meta_batch_size: int | None = None, callbacks: Sequence[Callable[[dict], None]] = (),
                   engine: Any = None) -> MetaTrainStats:
        """Fine-tune one copy per source once (every task reuses it) and embed each source's
        support sets under the start weights; ``model`` is left unchanged."""
        stats = MetaTrainStats()
        groups = group_by_source(episodes)
        for source, eps in groups.items():
            take = eps[: self.config.selection_episodes]
            self.centroids[source] = support_embedding(model, [b for ep in take for b in as_batches(ep.support)])
        self.sources = self._finetune_sources(model, groups, loss_fn, stats, callbacks)
        return stats

    def candidate_sources(self) -> list[str]:
        return list(self.sources)

    @contextlib.contextmanager
    def forcing_source(self, source: str) -> Iterator[None]:
        """`SelectsSource`: while inside, `start` uses ``source`` instead of choosing."""
        if source not in self.sources:
            raise ConfigError(f"unknown source {source!r}; have {', '.join(self.sources)}")
        self._forced = source
        try:
            yield
        finally:
            self._forced = None

    def select(self, model: nn.Module, support: Sequence) -> tuple[str, dict[str, float]]:
        """The source whose centroid is most similar to the support set's mean embedding."""
        if not self.sources:
            raise ConfigError("intermediate has no fine-tuned sources; call meta_train first")
        target = support_embedding(model, as_batches(support))
        sims = {s: float(F.cosine_similarity(target, c.to(target), dim=0)) for s, c in self.centroids.items()}
        return max(sims, key=lambda s: sims[s]), sims

    def start(self, model: nn.Module, support: Any) -> nn.Module:
        if self._forced is not None:
            chosen, sims = self._forced, dict[str, float]()
        else:
            chosen, sims = self.select(model, support)
        self.last_choice = {"source": chosen, "similarity": sims}
        start = copy.deepcopy(model)
        load_trainable(start, self.sources[chosen])
        return start

    def adaptation_info(self) -> dict:
        return dict(self.last_choice or {})

    def state_dict(self) -> dict:
        return {"sources": {s: {n: t.cpu() for n, t in st.items()} for s, st in self.sources.items()},
                "centroids": {s: c.cpu() for s, c in self.centroids.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sources = dict(state.get("sources", {}))
        self.centroids = dict(state.get("centroids", {}))

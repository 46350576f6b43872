"""The algorithm contract shared by every meta-learner and the fine-tuning baseline.

An algorithm sees a model (any ``nn.Module``), episodes (``.support`` and ``.query``,
each a batch of whatever ``loss_fn`` accepts or a list of such batches) and a loss function
``loss_fn(model, batch) -> scalar``. ``meta_train`` updates the model in place to the
meta-learned initialisation; ``adapt`` returns a fine-tuned copy and leaves the model
unchanged. Every algorithm adapts with the same shared fine-tuning code, so all are
evaluated by one procedure.

A model may declare optional hooks, each a small `typing.Protocol` below (`BeginsEpisodes`:
``begin_episode(support_batches)``, called before a task is adapted, e.g. to build a
Proto-MAML head for the episode's classes; `HasMetaParameters`: ``meta_parameters()``, the
parameters the outer loop updates, default all trainable ones; `HasEpisodeParameters`,
`HasHeadParameters`). An algorithm that chooses among candidate starts declares
`SelectsSource`.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from metaft.suite.foundation.errors import ConfigError, FailedRunError

from .finetune import StepFactory, as_batches, finetune
from .functional import _rng_state, _set_rng_state
from .outer import OuterStep, TorchOuterStep

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclass
class Episode:
    """A task: a support set to adapt on and a query set to judge the adaptation. ``source``
    names the dataset it was drawn from (filled by the runner; None when unknown), for methods
    that treat sources separately (e.g. merging per-dataset fine-tunings)."""

    support: Any
    query: Any
    source: str | None = None


class NonFiniteLossError(FailedRunError, FloatingPointError):
    """A loss became NaN or infinite; the message says where."""


@dataclass
class AlgorithmConfig:
    """Fine-tuning settings shared by all algorithms (the evaluation procedure)."""

    finetune_lr: float = 5e-5
    finetune_optimizer: str = "adam"
    finetune_steps: int = 10

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_lr") and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{f.name} must be a positive number, got {value!r}")
            if f.name.endswith("_steps") and not (isinstance(value, int) and value >= 0):
                raise ConfigError(f"{f.name} must be a non-negative integer, got {value!r}")
        if self.finetune_optimizer not in ("adam", "sgd"):
            raise ConfigError(f"finetune_optimizer must be 'adam' or 'sgd', got {self.finetune_optimizer!r}")


@dataclass
class MetaConfig(AlgorithmConfig):
    """Seed-plan defaults: inner SGD lr 1e-3, outer Adam lr 1e-4."""

    inner_lr: float = 1e-3
    inner_steps: int = 5
    outer_lr: float = 1e-4
    meta_batch_size: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.meta_batch_size, int) and self.meta_batch_size >= 1):
            raise ConfigError(f"meta_batch_size must be an integer >= 1, got {self.meta_batch_size!r}")


@dataclass
class MetaTrainStats:
    steps: int = 0
    episodes: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)
    # the meta-step (1-based) at which the algorithm ran out of memory and switched to its
    # memory-saving path (`Algorithm.save_memory`), None when it never had to
    memory_fallback_step: int | None = None


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator failing (where the OS lets it fail rather
    than killing the process)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


# The optional hooks a model may declare, one protocol each (a model implements any subset; a
# plain nn.Module implements none and gets the defaults of the functions below).
@runtime_checkable
class HasMetaParameters(Protocol):
    def meta_parameters(self) -> list[nn.Parameter]:
        """The parameters the outer loop updates (default: all that require grad)."""
        ...


@runtime_checkable
class BeginsEpisodes(Protocol):
    def begin_episode(self, support: Sequence) -> None:
        """Called with an episode's support batches before its inner loop (e.g. to build a head)."""
        ...


@runtime_checkable
class HasEpisodeParameters(Protocol):
    def episode_parameters(self) -> list[nn.Parameter]:
        """Per-episode parameters (a head built by begin_episode) that fine-tuning also trains."""
        ...


@runtime_checkable
class HasHeadParameters(Protocol):
    def head_parameter_names(self) -> list[str]:
        """The parameters ANIL adapts (default: the last layer with weights)."""
        ...


def meta_parameters(model: nn.Module) -> list[nn.Parameter]:
    params = list(model.meta_parameters()) if isinstance(model, HasMetaParameters) else list(model.parameters())
    return [p for p in params if p.requires_grad]


def begin_episode(model: nn.Module, support: Sequence) -> None:
    if isinstance(model, BeginsEpisodes):
        model.begin_episode(support)


def check_finite(loss: torch.Tensor, where: str) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss became {value} {where}; lower the learning rate or check the data")


def _free_cached_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _chunks(episodes: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for ep in episodes:
        chunk.append(ep)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


EVAL_MODES = ("shared", "own")


class Algorithm:
    """Base class: subclasses set ``Config`` and implement :meth:`meta_loss`."""

    name = "algorithm"
    Config: type[AlgorithmConfig] = AlgorithmConfig
    meta_learns = True  # False for the plain fine-tuning baseline
    uses_outer_step = True  # False: meta-training is plain fine-tuning (merge, intermediate), no outer update
    # where meta-training is plain fine-tuning (uses_outer_step False), what applies its updates: a
    # runner's engine (e.g. DeepSpeed) sets it; None: torch optimizers
    step_factory: StepFactory | None = None
    second_order = False  # True: the meta-gradient differentiates through inner-loop gradients
    supports_zero3 = False  # True: meta-training never needs whole weights outside the engine's forward/backward

    def __init__(self, config: AlgorithmConfig | None = None):
        # each algorithm's own Config dataclass (its fields are read by name, so typed loosely)
        self.config: Any = config if config is not None else self.Config()
        self._outer: OuterStep | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # ------------------------------------------------------------------ hooks for subclasses
    def meta_loss(self, model: nn.Module, episode: Episode, loss_fn: LossFn) -> tuple[torch.Tensor, float]:
        """(objective, loss to report): the objective's gradient w.r.t. the meta-parameters is
        this algorithm's meta-gradient; the reported loss is the task loss it stands for."""
        raise NotImplementedError

    def meta_batch_loss(self, model: nn.Module, episodes: Sequence[Episode], loss_fn: LossFn
                        ) -> tuple[torch.Tensor, float] | None:
        """(sum of the tasks' objectives, sum of their reported losses) computed for the whole
        meta-batch at once, or None to use :meth:`meta_loss` task by task (the default)."""
        return None

    def outer_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return meta_parameters(model)

    def outer_optimizer(self) -> tuple[str, float]:
        """(optimizer, learning rate) of the outer update, whichever engine applies it."""
        lr = getattr(self.config, "outer_lr", None)
        if lr is None:  # a plugin's bug, not bad input: keep the traceback
            raise TypeError(f"{type(self).__name__} meta-learns but its Config has no outer_lr; derive the Config "
                            f"from MetaConfig or override outer_optimizer()")
        return "adam", lr

    def make_outer_step(self, model: nn.Module) -> OuterStep:
        return TorchOuterStep(self.outer_parameters(model), *self.outer_optimizer())

    def save_memory(self) -> bool:
        """Switch to a path that needs less memory for the same meta-gradient (second-order MAML:
        checkpointed inner steps) after an out-of-memory error; False when there is none, or it is
        on already. `meta_train` then redoes the meta-step from the same random state."""
        return False

    def own_adaptation(self, model: nn.Module) -> list[dict] | None:
        """SGD parameter groups (``params``, ``lr``) of the algorithm's own adaptation, for a
        model whose episode has begun; None when it has none (then only "shared" applies)."""
        return None

    @classmethod
    def has_own_adaptation(cls) -> bool:
        return cls.own_adaptation is not Algorithm.own_adaptation

    def meta_steps(self, n_episodes: int, meta_batch_size: int, n_sources: int = 1) -> int:
        """How many updates ``meta_train`` takes on ``n_episodes`` (for progress bars)."""
        return math.ceil(n_episodes / meta_batch_size) if n_episodes else 0

    def adaptation_info(self) -> dict:
        """What the last :meth:`adapt` chose that a result row should record (e.g. the
        intermediate source); JSON-serialisable."""
        return {}

    # ------------------------------------------------------------------ public API
    def meta_train(self, model: nn.Module, episodes: Iterable[Episode], loss_fn: LossFn,
                   steps: int | None = None, *, meta_batch_size: int | None = None,
                   callbacks: Sequence[Callable[[dict], None]] = (), engine: OuterStep | None = None
                   ) -> MetaTrainStats:
        """Run up to ``steps`` outer updates (default: until ``episodes`` is exhausted)."""
        stats = MetaTrainStats()
        if not self.meta_learns:
            return stats
        size = int(meta_batch_size or getattr(self.config, "meta_batch_size", 1) or 1)
        if engine is not None:
            self._outer = engine
        elif self._outer is None:
            self._outer = self.make_outer_step(model)
        outer = self._outer
        model.train()
        for batch_of_tasks in _chunks(episodes, size):
            if steps is not None and stats.steps >= steps:
                break
            device = next(model.parameters()).device
            rng = _rng_state(device)
            try:
                total = self._accumulate(model, batch_of_tasks, loss_fn, outer, stats)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or not self.save_memory():
                    raise
                total = None  # redone below, outside the handler: its traceback holds the failed step's tensors
            if total is None:
                outer.zero_grad()
                _free_cached_memory()
                log.warning("%s ran out of memory in meta-step %d; switched to its memory-saving path and redid "
                            "the step from the same random state", self.name, stats.steps + 1)
                stats.memory_fallback_step = stats.steps + 1
                _set_rng_state(rng, device)
                total = self._accumulate(model, batch_of_tasks, loss_fn, outer, stats)
            outer.step()
            stats.steps += 1
            stats.losses.append(total / len(batch_of_tasks))
            for cb in callbacks:
                cb({"step": stats.steps, "loss": stats.losses[-1], "episodes": stats.episodes})
        return stats

    def _accumulate(self, model: nn.Module, batch_of_tasks: Sequence[Episode], loss_fn: LossFn, outer: OuterStep,
                    stats: MetaTrainStats) -> float:
        """One meta-batch's meta-gradient into the outer step's gradients; the summed reported loss."""
        outer.zero_grad()
        total, episodes = 0.0, 0
        together = self.meta_batch_loss(model, batch_of_tasks, loss_fn)
        if together is not None:  # the meta-batch's tasks in one pass (e.g. vmap); checked once per step
            objective, total = together
            check_finite(objective, f"in meta-step {stats.steps + 1}")
            outer.backward(objective / len(batch_of_tasks))
            episodes = len(batch_of_tasks)
        for ep in batch_of_tasks if together is None else ():
            objective, reported = self.meta_loss(model, ep, loss_fn)
            check_finite(objective, f"in meta-step {stats.steps + 1} (episode {stats.episodes + episodes + 1})")
            outer.backward(objective / len(batch_of_tasks))
            total += reported
            episodes += 1
        stats.episodes += episodes  # counted once the step is whole (a redone step is not counted twice)
        return total

    def adapt(self, model: nn.Module, support: Any, loss_fn: LossFn, steps: int | None = None, *,
              lr: float | None = None, optimizer: str | None = None,
              on_step: Callable[[int, nn.Module, float | None], None] | None = None,
              step_factory: Callable | None = None, mode: str = "shared") -> nn.Module:
        """Fine-tune a copy of ``model`` on ``support``; ``mode="shared"`` is the same procedure
        for every algorithm, ``mode="own"`` the algorithm's own adaptation (plain SGD with its
        groups' step sizes; ``lr`` and ``optimizer`` do not apply). ``step_factory`` swaps
        torch's optimizer for another engine (see :func:`finetune`)."""
        if mode not in EVAL_MODES:
            raise ConfigError(f"unknown evaluation mode {mode!r}; choose one of {', '.join(EVAL_MODES)}")
        batches = as_batches(support)
        adapted = self.start(model, batches)
        begin_episode(adapted, batches)
        steps = self.config.finetune_steps if steps is None else steps
        if mode == "own":
            groups = self.own_adaptation(adapted)
            if groups is None:
                raise ConfigError(f"algorithm {self.name!r} has no own adaptation; evaluate it in the shared mode")
            return finetune(adapted, batches, loss_fn, steps, lr=groups[0]["lr"], optimizer="sgd", params=groups,
                            on_step=on_step)
        return finetune(adapted, batches, loss_fn, steps,
                        lr=self.config.finetune_lr if lr is None else lr,
                        optimizer=optimizer or self.config.finetune_optimizer,
                        params=meta_parameters(adapted) + _episode_parameters(adapted),
                        on_step=on_step, step_factory=step_factory)

    def start(self, model: nn.Module, support: Any) -> nn.Module:
        """A task's starting weights, a copy that fine-tuning may change: the meta-learned model
        itself here; a selecting algorithm (intermediate) loads the start it chooses for ``support``.
        Every recipe (suite/recipes.py) fine-tunes from this."""
        return copy.deepcopy(model)

    def state_dict(self) -> dict:
        """Algorithm state beyond the model (e.g. learned step sizes), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _episode_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.episode_parameters() if p.requires_grad] if isinstance(model, HasEpisodeParameters) else []


@runtime_checkable
class SelectsSource(Protocol):
    """An algorithm that chooses its start among candidates (intermediate): the runner's hindsight
    (oracle) mode fine-tunes from each, with the choice forced."""

    def candidate_sources(self) -> list[str]:
        ...

    def forcing_source(self, source: str) -> AbstractContextManager[None]:
        """While inside, `start` uses ``source`` instead of choosing."""
        ...

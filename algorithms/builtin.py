"""Built-in algorithms. Each is a few lines on top of :mod:`algorithms.base` and the one
functional inner loop in :mod:`algorithms.functional` (learn2learn-style wrappers)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metaft.suite.foundation.errors import ConfigError

from .base import (
    Algorithm,
    AlgorithmConfig,
    BeginsEpisodes,
    Episode,
    HasHeadParameters,
    LossFn,
    MetaConfig,
    begin_episode,
    check_finite,
)
from .finetune import as_batches
from .functional import (
    batched_query_losses,
    checkpointed_meta_gradient,
    double_backward_safe,
    inner_loop,
    query_loss,
    stackable,
)
from .outer import TorchOuterStep
from .registry import register_algorithm


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def head_names(model: nn.Module) -> list[str]:
    """The parameters ANIL adapts: ``model.head_parameter_names()`` or the last layer with weights."""
    if isinstance(model, HasHeadParameters):
        return list(model.head_parameter_names())
    last = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    return [f"{last}.{n}" if last else n for n, _ in model.get_submodule(last or "").named_parameters(recurse=False)]


@register_algorithm("baseline")
class Baseline(Algorithm):
    """Plain fine-tuning from the pretrained weights: no meta-training."""

    Config = AlgorithmConfig
    meta_learns = False
    supports_zero3 = True  # no meta-training: fine-tuning is the engine's own step


@dataclass
class MultitaskConfig(AlgorithmConfig):
    lr: float = 5e-5
    meta_batch_size: int = 4


@register_algorithm("multitask")
class Multitask(Algorithm):
    """Train on the union of the meta-training tasks' data, then fine-tune."""

    Config = MultitaskConfig

    def outer_optimizer(self):
        return "adam", self.config.lr

    def meta_loss(self, model, episode, loss_fn):
        batches = as_batches(episode.support) + as_batches(episode.query)
        begin_episode(model, as_batches(episode.support))
        loss = torch.stack([loss_fn(model, b) for b in batches]).mean()
        return loss, float(loss.detach())


@dataclass
class MAMLConfig(MetaConfig):
    first_order: bool = False
    # second order only: keep the parameters between inner steps instead of every step's
    # activations, recompute each step in the outer backward (memory flat in inner_steps, one
    # more forward+backward per step); see algorithms.functional.checkpointed_meta_gradient
    checkpoint_inner: bool = False
    # run the meta-batch's inner loops together under torch.func.vmap when the tasks' batches have
    # one shape and the model keeps no per-episode state (no begin_episode hook, e.g. the sinusoid
    # MLP); otherwise, and with learned step sizes, the tasks run one after another
    batched_tasks: bool = False


@register_algorithm("maml")
class MAML(Algorithm):
    """MAML (Finn et al. 2017): second-order meta-gradient through the inner SGD steps."""

    Config: type[AlgorithmConfig] = MAMLConfig
    second_order = True  # unless config.first_order

    def inner_names(self, model: nn.Module) -> list[str]:
        return trainable_names(model)

    def inner_lr(self, model: nn.Module):
        return self.config.inner_lr

    def own_adaptation(self, model: nn.Module) -> list[dict]:
        """The inner loop's SGD for the whole budget, on the inner loop's parameters."""
        params = dict(model.named_parameters())
        return [{"params": [params[n] for n in self.inner_names(model)], "lr": self.config.inner_lr}]

    def save_memory(self) -> bool:
        """Second order with a scalar step size: from now on the checkpointed inner loop (the same
        meta-gradient, memory flat in inner_steps; issue #21 measured on MiniLM at 5 inner steps: 2.14x plain
        fine-tuning's peak memory against 4.29x unrolled, at 1.63x the time, so unrolled stays the
        default while it fits). Learned step sizes (Meta-SGD) and first order have no such path."""
        if self.config.first_order or getattr(self.config, "checkpoint_inner", True) or self._memory_saving:
            return False
        self._memory_saving = True
        return True

    _memory_saving = False

    def _checkpointed(self, model) -> bool:
        return (bool(getattr(self.config, "checkpoint_inner", False)) or self._memory_saving) and \
            not isinstance(self.inner_lr(model), dict)

    def meta_batch_loss(self, model, episodes, loss_fn: LossFn):
        if not getattr(self.config, "batched_tasks", False) or len(episodes) < 2 or self._memory_saving:
            return None
        lr = self.inner_lr(model)
        supports = [as_batches(ep.support) for ep in episodes]
        queries = [as_batches(ep.query) for ep in episodes]
        if (isinstance(model, BeginsEpisodes) or isinstance(lr, dict)
                or not all(stackable([s[k] for s in supports]) for k in range(len(supports[0])))
                or not all(stackable([q[k] for q in queries]) for k in range(len(queries[0])))
                or len({len(s) for s in supports}) > 1 or len({len(q) for q in queries}) > 1):
            return None
        second_order = not self.config.first_order
        with double_backward_safe(second_order):
            losses = batched_query_losses(model, supports, queries, loss_fn, self.config.inner_steps, lr,
                                          self.inner_names(model), create_graph=second_order)
        objective = losses.sum()
        return objective, float(objective.detach())

    def meta_loss(self, model, episode: Episode, loss_fn: LossFn):
        support, query = as_batches(episode.support), as_batches(episode.query)
        begin_episode(model, support)
        second_order = not self.config.first_order
        if second_order and self._checkpointed(model):
            with double_backward_safe(True):
                loss, grads = checkpointed_meta_gradient(
                    model, support, query, loss_fn, self.config.inner_steps, self.inner_lr(model),
                    self.inner_names(model), on_loss=lambda k, l: check_finite(l, f"at inner step {k + 1}"))
            params = dict(model.named_parameters())  # a surrogate whose gradient is the meta-gradient
            return sum((params[n] * g).sum() for n, g in grads.items()), float(loss)
        with double_backward_safe(second_order):
            adapted = inner_loop(model, support, loss_fn, self.config.inner_steps, self.inner_lr(model),
                                 self.inner_names(model), create_graph=second_order,
                                 on_loss=lambda k, l: check_finite(l, f"at inner step {k + 1}"))
            loss = query_loss(model, adapted, query, loss_fn)
        return loss, float(loss.detach())


@dataclass
class FOMAMLConfig(MetaConfig):
    first_order: bool = True
    batched_tasks: bool = False  # as in MAMLConfig

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.first_order:
            raise ConfigError("fomaml is first-order by definition; use algorithm 'maml' for second order")


@register_algorithm("fomaml")
class FOMAML(MAML):
    """First-order MAML: the meta-gradient is the query gradient at the adapted weights."""

    Config = FOMAMLConfig
    second_order = False


@register_algorithm("anil")
class ANIL(MAML):
    """ANIL (Raghu et al. 2020): meta-learn the whole init, adapt only the head in the inner loop."""

    def inner_names(self, model):
        return [n for n in head_names(model) if n in dict(model.named_parameters())]


@dataclass
class MetaSGDConfig(MetaConfig):
    first_order: bool = False
    lr_lr: float = 1e-4  # outer learning rate of the step sizes


@register_algorithm("metasgd")
class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017) with one learned step size per parameter group (layer):
    it learns how to fine-tune, not only where to start."""

    Config = MetaSGDConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.lrs: dict[str, nn.Parameter] = {}

    @staticmethod
    def group(name: str) -> str:
        return name.rsplit(".", 1)[0] if "." in name else name

    def inner_lr(self, model):
        new = []
        for n in self.inner_names(model):
            g = self.group(n)
            if g not in self.lrs:
                self.lrs[g] = nn.Parameter(torch.tensor(float(self.config.inner_lr)))
                new.append(self.lrs[g])
        if new and self._outer is not None and hasattr(self._outer, "optimizer"):
            self._outer.optimizer.add_param_group({"params": new, "lr": self.config.lr_lr})
        return {n: self.lrs[self.group(n)] for n in self.inner_names(model)}

    def make_outer_step(self, model):
        self.inner_lr(model)  # create the step sizes of the parameters known now
        outer = TorchOuterStep(self.outer_parameters(model), "adam", self.config.outer_lr)
        outer.optimizer.add_param_group({"params": list(self.lrs.values()), "lr": self.config.lr_lr})
        return outer

    def own_adaptation(self, model: nn.Module) -> list[dict]:
        """SGD with the learned step size of each layer (a layer first seen now, e.g. a new
        head, gets the initial ``inner_lr``)."""
        params = dict(model.named_parameters())
        groups: dict[str, list] = {}
        for n in self.inner_names(model):
            groups.setdefault(self.group(n), []).append(params[n])
        return [{"params": ps, "lr": float(self.lrs[g].detach()) if g in self.lrs else self.config.inner_lr}
                for g, ps in groups.items()]

    def learned_lrs(self) -> dict[str, float]:
        return {g: float(p.detach()) for g, p in self.lrs.items()}

    def state_dict(self):
        return {"lrs": self.learned_lrs()}

    def load_state_dict(self, state):
        self.lrs = {g: nn.Parameter(torch.tensor(v)) for g, v in state.get("lrs", {}).items()}


@dataclass
class ReptileConfig(MetaConfig):
    outer: str = "adam"  # "adam": Adam on (init - adapted); "interpolate": init += epsilon * (adapted - init)
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outer not in ("adam", "interpolate"):
            raise ConfigError(f"reptile outer must be 'adam' or 'interpolate', got {self.outer!r}")
        if not 0 < self.epsilon <= 1:
            raise ConfigError(f"reptile epsilon must be in (0, 1], got {self.epsilon}")


@register_algorithm("reptile")
class Reptile(Algorithm):
    """Reptile (Nichol et al. 2018): k inner SGD steps, then move the init towards the result.

    The outer "gradient" is (init - adapted); it is written as the gradient of the
    surrogate sum(init * (init - adapted).detach()) so any outer step (torch or a
    DeepSpeed engine) applies it through an ordinary backward.
    """

    Config = ReptileConfig

    def outer_optimizer(self):
        if self.config.outer == "interpolate":  # SGD with lr epsilon on (init - adapted) interpolates
            return "sgd", self.config.epsilon
        return "adam", self.config.outer_lr

    def own_adaptation(self, model: nn.Module) -> list[dict]:
        """The inner loop's SGD at the inner learning rate, for the whole budget."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.config.inner_lr}]

    def meta_loss(self, model, episode, loss_fn):
        support = as_batches(episode.support)
        begin_episode(model, support)
        losses: list[float] = []

        def record(k, loss):
            check_finite(loss, f"at inner step {k + 1}")
            losses.append(float(loss.detach()))

        names = trainable_names(model)
        adapted = inner_loop(model, support, loss_fn, max(1, self.config.inner_steps), self.config.inner_lr,
                             names, detach=True, on_loss=record)
        params = dict(model.named_parameters())
        outer = {id(p) for p in self.outer_parameters(model)}
        surrogate = sum((params[n] * (params[n] - adapted[n]).detach()).sum()
                        for n in names if id(params[n]) in outer)
        return surrogate, sum(losses) / len(losses)

"""Plain fine-tuning: the one procedure that adapts and evaluates every algorithm."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from torch import nn

from .outer import TorchOuterStep


def as_batches(data: Any) -> list:
    """A support/query set is one batch or a *list* of batches (a tuple is one batch, e.g. (x, y))."""
    return list(data) if isinstance(data, list) else [data]


StepFactory = Callable[[nn.Module, list, float, str], "object"]


def finetune(model: nn.Module, batches: Sequence, loss_fn: Callable, steps: int, *, lr: float,
             optimizer: str = "adam", params: Sequence[nn.Parameter] | Sequence[dict] | None = None,
             on_step: Callable[[int, nn.Module, float | None], None] | None = None,
             step_factory: StepFactory | None = None) -> nn.Module:
    """``steps`` optimizer steps cycling over ``batches``; ``on_step(k, model, loss)`` after
    step k (and once before the first step with k=0, loss None). Returns ``model``.

    ``step_factory(model, params, lr, optimizer)`` may supply what applies the updates
    (an object with zero_grad/backward/step, e.g. a DeepSpeed engine); default: torch.
    ``params`` may be torch parameter groups (dicts with their own ``lr``), e.g. an
    algorithm's own adaptation with learned per-layer step sizes.
    """
    if not batches:
        raise ValueError("cannot fine-tune on an empty support set")
    chosen: list[Any]  # parameters, or parameter groups (dicts)
    given: list[Any] = list(params) if params is not None else []
    if given and isinstance(given[0], dict):
        chosen = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in given]
        chosen = [g for g in chosen if g["params"]]
    else:
        chosen = [p for p in (given if params is not None else model.parameters()) if p.requires_grad]
        chosen = list({id(p): p for p in chosen}.values())
    opt: Any = TorchOuterStep(chosen, optimizer, lr) if step_factory is None else \
        step_factory(model, chosen, lr, optimizer)
    model.train()
    if on_step is not None:
        on_step(0, model, None)
    for step in range(steps):
        loss = loss_fn(model, batches[step % len(batches)])
        value = float(loss.detach())
        if not math.isfinite(value):
            from .base import NonFiniteLossError

            raise NonFiniteLossError(f"loss became {value} at fine-tuning step {step + 1}; "
                                     f"lower the learning rate or check the data")
        opt.zero_grad()
        opt.backward(loss)
        opt.step()
        if on_step is not None:
            on_step(step + 1, model, value)
    opt.zero_grad()
    return model

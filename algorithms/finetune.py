"""Plain fine-tuning: the one procedure that adapts and evaluates every algorithm."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn


def as_batches(data: Any) -> list:
    """A support/query set is one batch or a *list* of batches (a tuple is one batch, e.g. (x, y))."""
    return list(data) if isinstance(data, list) else [data]


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")


def finetune(model: nn.Module, batches: Sequence, loss_fn: Callable, steps: int, *, lr: float,
             optimizer: str = "adam", params: Sequence[nn.Parameter] | None = None,
             on_step: Callable[[int, nn.Module, float | None], None] | None = None) -> nn.Module:
    """``steps`` optimizer steps cycling over ``batches``; ``on_step(k, model, loss)`` after
    step k (and once before the first step with k=0, loss None). Returns ``model``."""
    if not batches:
        raise ValueError("cannot fine-tune on an empty support set")
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    params = list({id(p): p for p in params}.values())
    opt = make_optimizer(optimizer, params, lr)
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
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1, model, value)
    opt.zero_grad(set_to_none=True)
    return model

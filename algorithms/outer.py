"""What applies an update (outer meta-step or fine-tuning step): a tiny interface, so a
DeepSpeed engine can stand in for a torch optimizer."""
from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import nn

from metaft.suite.foundation.errors import ConfigError


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")


class OuterStep(Protocol):
    """What ``meta_train`` needs from whatever applies the meta-gradient."""

    def zero_grad(self) -> None: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> None: ...


class TorchOuterStep:
    """Backward into ``.grad`` and a torch optimizer step (Adam by default)."""

    def __init__(self, params: Sequence[nn.Parameter], optimizer: str = "adam", lr: float = 1e-4):
        self.params = list(params)
        self.optimizer = make_optimizer(optimizer, self.params, lr)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()

"""The sinusoid regression of the MAML paper (Finn et al. 2017, section 5.1)."""
from __future__ import annotations

import math

import torch
from torch import nn

from metaft.algorithms import Episode


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def sine_task(gen: torch.Generator, k: int = 10, q: int = 10):
    amp = 0.1 + 4.9 * torch.rand((), generator=gen)
    phase = math.pi * torch.rand((), generator=gen)
    x = 10 * torch.rand(k + q, 1, generator=gen) - 5
    y = amp * torch.sin(x - phase)
    return Episode((x[:k], y[:k]), (x[k:], y[k:]))


def episodes(n: int, seed: int, k: int = 10, q: int = 10):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield sine_task(gen, k, q)


def pretrain_jointly(model, n_steps: int, seed: int = 1, lr: float = 1e-3):
    """The same network trained on all tasks at once (the MAML paper's 'pretrained' baseline)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for ep in episodes(n_steps, seed):
        loss = mse(model, (torch.cat([ep.support[0], ep.query[0]]), torch.cat([ep.support[1], ep.query[1]])))
        opt.zero_grad(); loss.backward(); opt.step()
    return model


def post_adaptation_loss(algo, model, n_tasks: int = 100, steps: int = 5, lr: float = 0.01, seed: int = 999):
    """Mean query MSE after ``steps`` SGD steps on 10 support points of unseen sine tasks."""
    total = 0.0
    for ep in episodes(n_tasks, seed, k=10, q=50):
        adapted = algo.adapt(model, ep.support, mse, steps=steps, lr=lr, optimizer="sgd")
        with torch.no_grad():
            total += float(mse(adapted, ep.query))
    return total / n_tasks

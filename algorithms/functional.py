"""The one functional inner loop of the MAML family (maml, fomaml, anil, metasgd, reptile).

Parameters live in a dict of tensors; ``torch.func.functional_call`` runs the user's
``loss_fn(model, batch)`` with those tensors swapped into the module, so the loop
works on any ``nn.Module`` and keeps dropout and every other module behaviour.
``create_graph=True`` keeps the graph of the inner gradients (second-order MAML);
without it the inner gradients are constants and the meta-gradient is the query
gradient at the adapted weights (first-order MAML). ``detach=True`` cuts the adapted
weights from the initial ones entirely (Reptile only needs their values).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call


class _LossModule(nn.Module):
    """Wraps (model, loss_fn) so functional_call reaches every call the loss makes."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def double_backward_safe(enabled: bool = True):
    """Forward passes whose graph must be differentiated twice (second-order MAML) use the
    math attention kernel: the fused CUDA kernels (flash, memory-efficient) have no double
    backward ("derivative for aten::_scaled_dot_product_efficient_attention_backward is not
    implemented"). Found on an H100; the CPU kernels were not affected."""
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def functional_loss(model: nn.Module, params: Mapping[str, torch.Tensor], batch, loss_fn: Callable) -> torch.Tensor:
    """``loss_fn(model, batch)`` evaluated with ``params`` in place of the model's parameters."""
    wrapped = _LossModule(model, loss_fn)
    return functional_call(wrapped, {f"model.{k}": v for k, v in params.items()}, (batch,), strict=False)


def inner_loop(model: nn.Module, batches: Sequence, loss_fn: Callable, steps: int,
               lr: float | Mapping[str, torch.Tensor], trainable: Sequence[str], *,
               create_graph: bool = False, detach: bool = False,
               params: Mapping[str, torch.Tensor] | None = None,
               on_loss: Callable[[int, torch.Tensor], None] | None = None) -> dict[str, torch.Tensor]:
    """``steps`` SGD steps on ``trainable`` parameters, cycling over ``batches``.

    ``lr`` is one step size or a per-parameter-name mapping (learned step sizes).
    Returns the adapted parameter dict (untouched parameters are the originals).
    """
    current = dict(params if params is not None else model.named_parameters())
    if detach:
        current = {n: (t.detach().requires_grad_(n in trainable)) for n, t in current.items()}
    names = [n for n in trainable if n in current]
    for k in range(steps):
        loss = functional_loss(model, current, batches[k % len(batches)], loss_fn)
        if on_loss is not None:
            on_loss(k, loss)
        grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=create_graph,
                                    allow_unused=True)
        updated = dict(current)
        for n, g in zip(names, grads):
            if g is None:
                continue
            step = lr[n] if isinstance(lr, Mapping) else lr
            new = current[n] - step * g
            updated[n] = new.detach().requires_grad_() if detach else new
        current = updated
    return current


def query_loss(model: nn.Module, params: Mapping[str, torch.Tensor], batches: Sequence, loss_fn: Callable
               ) -> torch.Tensor:
    """Mean loss over the query batches at ``params``."""
    losses = [functional_loss(model, params, b, loss_fn) for b in batches]
    return torch.stack(losses).mean()


def _rng_state(device: torch.device | None) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device is not None and device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple, device: torch.device | None) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def checkpointed_meta_gradient(model: nn.Module, support: Sequence, query: Sequence, loss_fn: Callable, steps: int,
                               lr: float, trainable: Sequence[str],
                               on_loss: Callable[[int, torch.Tensor], None] | None = None
                               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Second-order MAML's meta-gradient with memory that does not grow with ``steps``
    ("memory-efficient MAML": only the parameters between inner steps are kept).

    Forward: ``steps`` SGD steps without a graph, keeping each step's parameters and the RNG
    state its forward pass started from (dropout). Backward: v = dL_query/dtheta_k, then for
    each step i from the last, v <- v - lr * H_i v, where H_i v is a Hessian-vector product of
    the step's support loss at theta_i, recomputed with the same RNG state; v is then
    dL_query/dtheta_0, the same meta-gradient as differentiating through the unrolled loop.
    Returns (query loss, {name: meta-gradient}) for the trainable parameters.
    """
    params = dict(model.named_parameters())
    names = [n for n in trainable if n in params]
    device = next(iter(params.values())).device if params else None
    thetas: list[dict[str, torch.Tensor]] = []
    states = []
    current = {n: params[n].detach() for n in names}
    for k in range(steps):
        thetas.append(current)
        states.append(_rng_state(device))
        leaf = {n: t.detach().requires_grad_() for n, t in current.items()}
        loss = functional_loss(model, leaf, support[k % len(support)], loss_fn)
        if on_loss is not None:
            on_loss(k, loss)
        grads = torch.autograd.grad(loss, [leaf[n] for n in names], allow_unused=True)
        current = {n: (leaf[n] - lr * g if g is not None else leaf[n]).detach() for n, g in zip(names, grads)}
    leaf = {n: t.detach().requires_grad_() for n, t in current.items()}
    q = query_loss(model, leaf, query, loss_fn)
    after = _rng_state(device)
    v = [g if g is not None else torch.zeros_like(leaf[n])
         for n, g in zip(names, torch.autograd.grad(q, [leaf[n] for n in names], allow_unused=True))]
    for k in reversed(range(steps)):
        _set_rng_state(states[k], device)
        leaf = {n: t.detach().requires_grad_() for n, t in thetas[k].items()}
        loss = functional_loss(model, leaf, support[k % len(support)], loss_fn)
        grads = torch.autograd.grad(loss, [leaf[n] for n in names], create_graph=True, allow_unused=True)
        used = [i for i, g in enumerate(grads) if g is not None]
        if used:
            hv = torch.autograd.grad([grads[i] for i in used], [leaf[names[i]] for i in used],
                                     grad_outputs=[v[i] for i in used], allow_unused=True)
            for i, h in zip(used, hv):
                if h is not None:
                    v[i] = v[i] - lr * h.detach()
        del loss, grads
    _set_rng_state(after, device)  # the random stream continues as if the loop had run once
    return q.detach(), dict(zip(names, v))

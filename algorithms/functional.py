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
    """Wraps (model, loss_fn) so functional_call reaches every call the loss makes. One wrapper
    per model, reused (building an nn.Module per inner step was measurable overhead)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.loss_fn: Callable | None = None
        # tied weights (one tensor under two names) need functional_call's untying walk over every
        # module on each call; most models have none, so it is paid only where it is needed
        self.tied = (sum(1 for _ in model.named_parameters(remove_duplicate=False))
                     != sum(1 for _ in model.named_parameters()))

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def _wrapper(model: nn.Module, loss_fn: Callable) -> _LossModule:
    """Kept in the model's ``__dict__`` (not a submodule: no parameters, no state_dict entry), so
    ``copy.deepcopy(model)`` gets a wrapper of the copy and the pair is collected together."""
    wrapped = model.__dict__.get("_functional_loss_wrapper")
    if wrapped is None:
        wrapped = _LossModule(model)
        model.__dict__["_functional_loss_wrapper"] = wrapped
    object.__setattr__(wrapped, "loss_fn", loss_fn)  # a plain attribute: skip nn.Module's __setattr__
    return wrapped


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
    wrapped = _wrapper(model, loss_fn)
    try:
        return functional_call(wrapped, {f"model.{k}": v for k, v in params.items()}, (batch,), strict=False,
                               tie_weights=wrapped.tied)
    finally:  # the model must not keep the loss function (a closure may hold tensors; it may not pickle)
        object.__setattr__(wrapped, "loss_fn", None)


def inner_loop(model: nn.Module, batches: Sequence, loss_fn: Callable, steps: int,
               lr: float | Mapping[str, torch.Tensor], trainable: Sequence[str], *,
               create_graph: bool = False, detach: bool = False,
               params: Mapping[str, torch.Tensor] | None = None,
               on_loss: Callable[[int, torch.Tensor], None] | None = None) -> dict[str, torch.Tensor]:
    """``steps`` SGD steps on ``trainable`` parameters, cycling over ``batches``.

    ``lr`` is one step size or a per-parameter-name mapping (learned step sizes).
    Returns the adapted parameter dict (untouched parameters are the originals).
    """
    current: dict[str, torch.Tensor] = dict(params if params is not None else model.named_parameters())
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
        torch.cuda.set_rng_state(state[1], device if device is not None else "cuda")


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


def stackable(batches: Sequence) -> bool:
    """Whether batches (one per task) have one structure, equal non-tensor leaves and tensors of one
    shape, so that they can be stacked along a new task dimension."""
    from torch.utils._pytree import tree_flatten

    flat = [tree_flatten(b) for b in batches]
    leaves0, spec0 = flat[0]
    for leaves, spec in flat[1:]:
        if spec != spec0 or len(leaves) != len(leaves0):
            return False
        for a, b in zip(leaves0, leaves):
            if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
                return False
            if isinstance(a, torch.Tensor) and (a.shape != b.shape or a.dtype != b.dtype):
                return False
            if not isinstance(a, torch.Tensor) and a != b:
                return False
    return True


def _stack(batches: Sequence) -> tuple[list, Callable]:
    """(stacked tensor leaves, rebuild(leaves) -> one task's batch) for equally shaped batches."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    flat = [tree_flatten(b)[0] for b in batches]
    leaves0, spec = tree_flatten(batches[0])
    is_tensor = [isinstance(x, torch.Tensor) for x in leaves0]
    stacked = [torch.stack([f[i] for f in flat]) for i, t in enumerate(is_tensor) if t]

    def rebuild(tensors: Sequence) -> object:
        it = iter(tensors)
        return tree_unflatten([next(it) if t else x for t, x in zip(is_tensor, leaves0)], spec)

    return stacked, rebuild


def batched_query_losses(model: nn.Module, supports: Sequence[Sequence], queries: Sequence[Sequence],
                         loss_fn: Callable, steps: int, lr: float, trainable: Sequence[str], *,
                         create_graph: bool = True) -> torch.Tensor:
    """Every task's post-adaptation query loss, the tasks' inner loops run together under
    ``torch.func.vmap`` instead of one after another (one task dimension on every batch tensor).

    Needs tasks whose support (and query) batches stack (`stackable`) and a model without
    per-episode state. Inner gradients come from ``torch.func.grad`` inside the vmap, so the
    result is differentiable by ordinary autograd: ``.sum().backward()`` gives the sum of the tasks'
    second-order meta-gradients (``create_graph=False``: the first-order ones). Dropout draws
    different numbers per task (``randomness="different"``): the same distribution as the
    sequential loop, not the same random stream.
    """
    from torch.func import grad, vmap

    params = dict(model.named_parameters())
    names = [n for n in trainable if n in params]
    fixed = {n: t for n, t in params.items() if n not in names}
    n_support, n_query = len(supports[0]), len(queries[0])
    support_data = [_stack([s[k] for s in supports]) for k in range(n_support)]
    query_data = [_stack([q[k] for q in queries]) for k in range(n_query)]

    def support_loss(weights: dict, tensors: list, k: int) -> torch.Tensor:
        return functional_loss(model, {**fixed, **weights}, support_data[k][1](tensors), loss_fn)

    def one_task(support_tensors: list, query_tensors: list) -> torch.Tensor:
        weights = {n: params[n] for n in names}
        for k in range(steps):
            g = grad(support_loss)(weights, support_tensors[k % n_support], k % n_support)
            if not create_graph:
                g = {n: t.detach() for n, t in g.items()}
            weights = {n: weights[n] - lr * g[n] for n in names}
        losses = [functional_loss(model, {**fixed, **weights}, query_data[j][1](query_tensors[j]), loss_fn)
                  for j in range(n_query)]
        return torch.stack(losses).mean()

    return vmap(one_task, randomness="different")([d[0] for d in support_data], [d[0] for d in query_data])

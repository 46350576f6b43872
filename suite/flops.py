"""FLOPs of training, counted from what a step really computes.

Per training token (Kaplan et al. 2020's accounting, embeddings as look-ups excluded):

    forward                         2 x N_forward    every non-embedding weight the input passes
    backward, activation gradients  2 x N_traversed  weights between the loss and the lowest
                                                     updated parameter (backward stops there)
    backward, weight gradients      2 x N_updated    the parameters the step updates

Full fine-tuning gives the familiar 6 x N; head-only training (ANIL's own adaptation) costs
about 2 x N (a forward pass), not 6 x (head parameters); adapters pay the forward over the
whole model and the backward through every layer above the lowest adapter. Parameters are
taken in registration order, which for the transformer backbones here is forward order.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn


def flops_per_token(model: nn.Module, updated: Iterable[nn.Parameter]) -> float:
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    updated_ids = {id(p) for p in updated}
    params = [p for p in model.parameters() if id(p) not in embedding]
    forward = sum(p.numel() for p in params)
    first = next((i for i, p in enumerate(params) if id(p) in updated_ids), len(params))
    traversed = sum(p.numel() for p in params[first:])
    n_updated = sum(p.numel() for p in params if id(p) in updated_ids)
    return 2.0 * forward + 2.0 * traversed + 2.0 * n_updated

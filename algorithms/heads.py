"""The model side of a task type: which features it reads, which head it uses, how it is scored.

A `TaskType` (``tasks/task_types.py``) names its model side as ``module:object`` (``model_side``),
resolved on first use, so a task type is one file even when it brings a head of its own, and
``tasks/`` never imports this package. `EpisodeEncoder.encode` stamps that name on every batch
(``batch["model_side"]``); `EpisodicTransformer` and `episode_loss` read it through `side_of`.

The three built-in sides:

- `SEQUENCE_LABELS` (classification): one pooled vector per example, a per-episode linear head
  built in ``begin_episode`` (class prototypes, zeros or random), cross-entropy;
- `TOKEN_LABELS` (NER): every token's vector, the same per-episode head over tokens with a label,
  token cross-entropy ignoring -100;
- `SPANS` (extractive QA): every token's vector, the shared start/end head (meta-learned with the
  encoder), the mean of the start and end cross-entropies.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ModelSide:
    """What a task type needs of the model.

    - ``pooled``: one vector per example (the model's pooling) rather than one per token;
    - ``episode_head``: a linear head over the labels is built per episode from the support set
      (else the model's shared span head is used, and its parameters are the "head" ANIL adapts);
    - ``loss(out, batch)``: the training loss of the model's output on a batch whose absent
      classes (no support example) are already masked to ``IGNORE_INDEX``."""

    name: str
    pooled: bool
    episode_head: bool

    def loss(self, out: Any, batch: dict) -> torch.Tensor:
        if not self.episode_head:
            start, end = out
            return (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
        labels = batch["labels"]
        if self.pooled:
            return F.cross_entropy(out, labels, ignore_index=IGNORE_INDEX)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


SEQUENCE_LABELS = ModelSide("sequence-labels", pooled=True, episode_head=True)
TOKEN_LABELS = ModelSide("token-labels", pooled=False, episode_head=True)
SPANS = ModelSide("spans", pooled=False, episode_head=False)

# batches built by hand (no ``model_side`` key) name a built-in task type
BUILTIN_SIDES = {"classification": SEQUENCE_LABELS, "ner": TOKEN_LABELS, "qa": SPANS}


@cache
def resolve(reference: str) -> ModelSide:
    """``module:object`` -> the `ModelSide` it names."""
    module, _, name = reference.partition(":")
    side = getattr(importlib.import_module(module), name)
    if not isinstance(side, ModelSide):
        raise TypeError(f"{reference} is a {type(side).__name__}, not a ModelSide")
    return side


def side_of(batch: dict) -> ModelSide:
    """The model side of the task type that encoded ``batch``."""
    reference = batch.get("model_side")
    return resolve(reference) if reference else BUILTIN_SIDES[batch["task_type"]]

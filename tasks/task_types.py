"""Task types as objects (MTEB's abstract task types are the model): what a dataset of the type
must provide, how a model's outputs on a query set become predictions, and which metric scores
them by default.

A new task type registers a `TaskType` here or through the ``suite.task_types`` entry point; its
datasets name it in `DatasetSpec.task_type`. (Episode sampling, encoding and the loss still
branch on the three built-in types in `tasks.episodes`, `tasks.tokenize` and
`algorithms.transformer_learner`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from metaft.suite.registry import Registry

from .metrics import decode_spans

# (model, encoded query batches, label names) -> (predictions, references); no torch import here, so
# that listing datasets and task types (`suite tasks`, the `suite tune` driver) stays light
Decoder = Callable[[Any, Sequence[dict], Sequence[str]], tuple[list, list]]


@dataclass(frozen=True)
class TaskType:
    """One kind of task. ``decode(model, batches, label_names)`` runs the model on encoded query
    batches and returns (predictions, references) in the form its metrics consume."""

    name: str
    columns: tuple[str, ...]  # canonical columns a dataset of this type must map
    default_metric: str
    decode: Decoder
    description: str = ""


TASK_TYPES: Registry[TaskType] = Registry("task type", base=TaskType, group="metaft.task_types",
                                          legacy_groups=("suite.task_types",), builtins=("metaft.tasks.task_types",))


def register_task_type(task_type: TaskType) -> TaskType:
    return TASK_TYPES.register(task_type.name, task_type)


def get_task_type(name: str) -> TaskType:
    return TASK_TYPES.get(name)


def _labels(model, batches, label_names):
    predictions, references = [], []
    for b in batches:
        predictions += model(b).argmax(-1).tolist()
        references += b["labels"].tolist()
    return predictions, references


def _tags(model, batches, label_names):
    """Tag sequences over the first sub-token of each word (the others carry IGNORE_INDEX)."""
    from .tokenize import IGNORE_INDEX

    predictions, references = [], []
    for b in batches:
        pred, labels = model(b).argmax(-1).cpu(), b["labels"].cpu()
        for p_row, l_row in zip(pred, labels):
            keep = l_row != IGNORE_INDEX
            references.append([label_names[i] for i in l_row[keep].tolist()])
            predictions.append([label_names[i] for i in p_row[keep].tolist()])
    return predictions, references


def _spans(model, batches, label_names):
    """The best answer text per question from its context windows' start/end logits."""
    predictions, references = [], []
    for b in batches:
        start, end = model(b)
        predictions += decode_spans(start.float().cpu().numpy(), end.float().cpu().numpy(),
                                    b["example_index"].tolist(), b["offsets"], b["contexts"])
        references += b["answers"]
    return predictions, references


register_task_type(TaskType("classification", ("text", "label"), "accuracy", _labels,
                            "one label per text; predictions are class indices"))
register_task_type(TaskType("ner", ("tokens", "tags"), "entity_f1", _tags,
                            "BIO tags per word; predictions are tag sequences"))
register_task_type(TaskType("qa", ("context", "question", "answers"), "squad_f1", _spans,
                            "extractive QA; predictions are answer texts"))
